"""Failed log-ins throttled by source address and by account name, in the database (every worker and node).

An address (an IPv6 /64) with LOGIN_MAX_FAILURES_PER_IP failures within LOGIN_IP_WINDOW_MINUTES is refused
for LOGIN_IP_BLOCK_MINUTES before any password is looked at. In LOCKOUT_MODE=delay an account name earns a
growing wait from its LOGIN_MAX_FAILURES-th failure on (1 s, doubling, at most MAX_DELAY); attempts before the
wait is over are refused unchecked, and the first one after it is checked as usual. Names are counted whether
an account has them or not, so no answer tells an existing account from an unknown one. LOCKOUT_MODE=lock
keeps the lock on the user row (auth/views.py).

Every count is one atomic statement (INSERT ... ON CONFLICT DO UPDATE ... RETURNING, on SQLite and PostgreSQL);
a block is set by a conditional UPDATE that only one request can win, so each block is audited once. In delay
mode the attempts at one name are checked one at a time (a claim on its row), so parallel guesses get one check
between them. docs/logins.md has the trade-off between delay and lock.
"""
import ipaddress
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, case, delete, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from app.audit.events import record
from app.blocking import release_idle_connection
from app.dbtypes import UTCDateTime, now_utc
from app.extensions import db

from .models import LoginThrottle, User

log = logging.getLogger("gatehouse.auth")
ADDRESS, ACCOUNT = "ip", "account"
MAX_DELAY = 30  # seconds: the longest wait an account name earns in delay mode
CLAIM_SECONDS = 10  # a check's claim ends with its outcome; this long at most if the process died meanwhile


@dataclass(frozen=True)
class Refusal:
    """Why an attempt is turned away unchecked: the address is blocked, or the name must wait, until when."""

    kind: str
    key: str
    until: datetime

    @property
    def seconds(self):
        """Return the whole seconds left (at least one)."""
        return max(1, math.ceil((self.until - now_utc()).total_seconds()))

    @property
    def message(self):
        """Return the sentence the log-in page shows: the same whether the account exists or not."""
        if self.kind == ADDRESS:
            minutes = math.ceil(self.seconds / 60)
            return f"Too many failed log-ins from your address. Try again in {minutes} minute{'s' * (minutes != 1)}."
        return f"Too many failed log-ins for this name. Try again in {self.seconds} second{'s' * (self.seconds != 1)}."


def address_key(address):
    """Return the key an address is counted under: IPv4 as is, IPv6 by its /64 (one customer's network)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return "unknown"
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)


def name_key(username):
    """Return the key an account name is counted under (names are unique regardless of case)."""
    return username.lower()[:80]


def delay_for(failures):
    """Return the seconds a name waits after this many failures in a row (0 below LOGIN_MAX_FAILURES)."""
    over = failures - current_app.config["LOGIN_MAX_FAILURES"]
    return 0 if over < 0 else min(MAX_DELAY, 2 ** min(over, 10))


def _address_on():
    """Say whether addresses are throttled at all (LOGIN_MAX_FAILURES_PER_IP=0 turns it off)."""
    return current_app.config["LOGIN_MAX_FAILURES_PER_IP"] > 0


def _delay_on():
    """Say whether account names earn a delay (LOCKOUT_MODE=delay)."""
    return current_app.config["LOCKOUT_MODE"] == "delay"


def _row(kind, key):
    """Return a where-clause for one throttle row."""
    return and_(LoginThrottle.kind == kind, LoginThrottle.key == key)


def refusal(address, username):
    """Return a Refusal when this attempt must be turned away before its password is looked at, else None.

    A blocked address costs one read and one counter update: no hash, no audit event (the count goes into the
    block's end). A waiting name is counted the same way; the caller records that refusal as a failed log-in.
    In delay mode the attempts at one name are checked one at a time (an atomic claim), so a burst of parallel
    guesses, or the moment a wait ends, buys one check between them, not one each.
    """
    now = now_utc()
    keys = [(ADDRESS, address_key(address))] if _address_on() else []
    keys += [(ACCOUNT, name_key(username))] if _delay_on() else []
    if not keys:
        return None
    rows = {row.kind: row for row in db.session.scalars(
        select(LoginThrottle).where(or_(*(_row(kind, key) for kind, key in keys))))}
    refused = next((Refusal(kind, rows[kind].key, rows[kind].blocked_until) for kind in (ADDRESS, ACCOUNT)
                    if kind in rows and rows[kind].blocked_until and rows[kind].blocked_until > now), None)
    release_idle_connection()
    if refused is None and _delay_on():
        key = name_key(username)
        if _claim(key, now):
            return None
        refused = Refusal(ACCOUNT, key, now + timedelta(seconds=1))  # a check takes well under a second
    if refused is None:
        return None
    db.session.execute(update(LoginThrottle).where(_row(refused.kind, refused.key))
                       .values(refused=LoginThrottle.refused + 1))
    db.session.commit()
    return refused


def _insert():
    """Return the INSERT construct of this database's dialect (both know ON CONFLICT ... RETURNING)."""
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(LoginThrottle.__table__)


def _claim(key, now):
    """Claim the check of a password for a name (inserting its row if new); return True unless another holds it."""
    table = LoginThrottle.__table__
    hold = now + timedelta(seconds=CLAIM_SECONDS)
    free = and_(or_(table.c.blocked_until.is_(None), table.c.blocked_until <= now),
                or_(table.c.checking_until.is_(None), table.c.checking_until <= now))
    statement = _insert().values(kind=ACCOUNT, key=key, failures=0, window_started_at=now, last_failure_at=now,
                                 refused=0, checking_until=hold)
    statement = statement.on_conflict_do_update(index_elements=[table.c.kind, table.c.key],
                                                set_={"checking_until": literal(hold, UTCDateTime())}, where=free)
    won = db.session.execute(statement.returning(table.c.key)).first() is not None
    db.session.commit()
    return won


def count_failure(address, username, account=True):
    """Count a failed or refused log-in against its address (and, with account, against the typed name).

    The attempt is refused either way; a count that cannot be written (a full disk) is logged at ERROR.
    """
    release_idle_connection()  # a fresh transaction: the write must not upgrade an old read snapshot (SQLite)
    try:
        if _address_on():
            _count_address(address_key(address))
        if account and _delay_on():
            _count_account(name_key(username), username)
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.error("failed log-in not counted for throttling: %s", str(exc).split("\n", 1)[0][:200])


def _count(kind, key, now):
    """Count one failure of a row, restarting its window when that has passed; return (failures, blocked_until)."""
    table = LoginThrottle.__table__
    stamp = literal(now, UTCDateTime())
    cutoff = now - timedelta(minutes=current_app.config["LOGIN_IP_WINDOW_MINUTES"])
    fresh = table.c.window_started_at <= cutoff
    statement = _insert().values(kind=kind, key=key, failures=1, window_started_at=now,
                                             last_failure_at=now, refused=0)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.kind, table.c.key],
        set_={"failures": case((fresh, 1), else_=table.c.failures + 1),
              "window_started_at": case((fresh, stamp), else_=table.c.window_started_at),
              "last_failure_at": stamp},
    ).returning(table.c.failures, table.c.blocked_until)
    return db.session.execute(statement).one()


def _block(kind, key, now, until):
    """Set a block unless one is running; return True for the one request that set it."""
    return db.session.execute(
        update(LoginThrottle).where(_row(kind, key), or_(LoginThrottle.blocked_until.is_(None),
                                                         LoginThrottle.blocked_until <= now))
        .values(blocked_at=now, blocked_until=until, refused=0)
    ).rowcount == 1


def _count_address(key):
    """Count a failure from an address; block it at the limit and audit that once."""
    now = now_utc()
    config = current_app.config
    failures, _ = _count(ADDRESS, key, now)
    blocked = failures >= config["LOGIN_MAX_FAILURES_PER_IP"] and _block(
        ADDRESS, key, now, now + timedelta(minutes=config["LOGIN_IP_BLOCK_MINUTES"]))
    db.session.commit()
    if blocked:
        minutes = config["LOGIN_IP_BLOCK_MINUTES"]
        record("auth.address_blocked", f"address {key} blocked for {minutes} minutes after {failures} failed log-ins",
               outcome="failure", actor="system",
               details={"address": key, "failures": failures, "minutes": minutes,
                        "window_minutes": config["LOGIN_IP_WINDOW_MINUTES"]}, strict=False)


def _count_account(key, username):
    """Count a failure for a typed name; from LOGIN_MAX_FAILURES on it waits longer each time (audited once)."""
    now = now_utc()
    failures, _ = _count(ACCOUNT, key, now)
    seconds = delay_for(failures)
    values = {"blocked_until": now + timedelta(seconds=seconds) if seconds else None, "checking_until": None}
    if failures == current_app.config["LOGIN_MAX_FAILURES"]:
        values["blocked_at"] = now  # the episode starts; refusals are counted from here
    db.session.execute(update(LoginThrottle).where(_row(ACCOUNT, key)).values(**values))
    db.session.commit()
    if seconds and failures == current_app.config["LOGIN_MAX_FAILURES"]:
        user = db.session.scalar(select(User).where(User.username == username)) if username else None
        record("auth.throttled", f"log-ins as {username} slowed after {failures} failures in a row",
               outcome="failure", actor=username, user_id=user.id if user else None,
               details={"failures": failures, "max_delay_seconds": MAX_DELAY}, strict=False)


def release(username):
    """End the claim of a name whose password was right, keeping its failures: a second factor is still to come."""
    if _delay_on():
        db.session.execute(update(LoginThrottle).where(_row(ACCOUNT, name_key(username))).values(checking_until=None))
        db.session.commit()


def forget_account(username):
    """Forget the failures of a name after its user logged in (the address keeps its count)."""
    if _delay_on():
        db.session.execute(delete(LoginThrottle).where(_row(ACCOUNT, name_key(username))))
        db.session.commit()


@dataclass(frozen=True)
class Block:
    """One current block as the admin page lists it."""

    kind: str  # ip, account (a name that waits), locked (a user locked in lock mode)
    key: str
    since: datetime | None
    until: datetime
    failures: int | None
    refused: int | None


def current_blocks():
    """Return what refuses log-ins now: blocked addresses, waiting names and locked users, the longest first."""
    now = now_utc()
    blocks = [Block(row.kind, row.key, row.blocked_at or row.last_failure_at, row.blocked_until, row.failures,
                    row.refused)
              for row in db.session.scalars(select(LoginThrottle).where(LoginThrottle.blocked_until > now))]
    blocks += [Block("locked", user.username, None, user.locked_until, None, None)
               for user in db.session.scalars(select(User).where(User.locked_until > now))]
    return sorted(blocks, key=lambda block: block.until, reverse=True)


def lift(kind, key, by):
    """End a current block at once (an admin's choice), audited with what it refused; return False if none ran."""
    now = now_utc()
    if kind == "locked":
        user = db.session.scalar(select(User).where(User.username == key, User.locked_until > now))
        if user is None:
            return False
        user.locked_until, user.failed_logins = None, 0
        db.session.commit()
        record("auth.block_lifted", f"lock of account {key} lifted by {by}", user_id=user.id,
               details={"kind": kind, "key": key, "by": by}, strict=False)
        return True
    row = db.session.scalar(select(LoginThrottle).where(_row(kind, key), LoginThrottle.blocked_until > now))
    if row is None:
        return False
    refused, failures = row.refused, row.failures
    # A lifted address starts counting afresh; a lifted name is forgotten.
    ended = db.session.execute(
        update(LoginThrottle).where(_row(kind, key), LoginThrottle.blocked_until > now)
        .values(blocked_at=None, blocked_until=None, failures=0, refused=0, window_started_at=now)
    ).rowcount
    db.session.commit()
    if ended:
        what = f"address {key}" if kind == ADDRESS else f"wait of name {key}"
        record("auth.block_lifted", f"block of {what} lifted by {by} ({refused} attempts refused meanwhile)",
               details={"kind": kind, "key": key, "by": by, "failures": failures, "refused": refused}, strict=False)
    return bool(ended)


def sweep():
    """Report address blocks that ran out (once, with what they refused) and drop rows nothing needs any more."""
    now = now_utc()
    ended = db.session.execute(
        select(LoginThrottle.kind, LoginThrottle.key, LoginThrottle.blocked_at, LoginThrottle.failures,
               LoginThrottle.refused)
        .where(LoginThrottle.blocked_at.is_not(None), LoginThrottle.blocked_until <= now)).all()
    reported = 0
    for kind, key, blocked_at, failures, refused in ended:
        won = db.session.execute(  # one process of the cluster reports each end
            update(LoginThrottle).where(_row(kind, key), LoginThrottle.blocked_at == blocked_at).values(blocked_at=None)
        ).rowcount
        db.session.commit()
        if won and kind == ADDRESS:  # a name's short wait ends quietly; its start was audited (auth.throttled)
            reported += 1
            record("auth.block_lifted", f"block of address {key} ended ({refused} attempts refused meanwhile)",
                   actor="system", details={"kind": kind, "key": key, "by": None, "reason": "expired",
                                            "failures": failures, "refused": refused}, strict=False)
    cutoff = now - timedelta(minutes=current_app.config["LOGIN_IP_WINDOW_MINUTES"])
    stale = and_(LoginThrottle.window_started_at <= cutoff, LoginThrottle.blocked_at.is_(None),
                 or_(LoginThrottle.blocked_until.is_(None), LoginThrottle.blocked_until <= now))
    if db.session.scalar(select(LoginThrottle.key).where(stale).limit(1)) is not None:
        db.session.execute(delete(LoginThrottle).where(stale))
    db.session.commit()
    return reported
