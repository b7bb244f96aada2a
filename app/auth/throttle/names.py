"""Failed log-ins counted by account name, in one of two modes (docs/logins.md has the trade-off).

LOCKOUT_MODE=delay: a name earns a growing wait from its LOGIN_MAX_FAILURES-th failure on (1 s, doubling, at most
MAX_DELAY); attempts before the wait is over are refused unchecked, the first one after it is checked as usual.
Names are counted whether an account has them or not, so no answer tells an existing account from an unknown one,
and the attempts at one name are checked one at a time (a claim on its row), so parallel guesses get one check
between them. LOCKOUT_MODE=lock: the user row counts the failures and is locked at the limit.
"""
from datetime import timedelta

from flask import current_app
from sqlalchemy import and_, case, delete, literal, or_, select, update

from app.audit.events import record
from app.dbtypes import UTCDateTime, now_utc
from app.extensions import db

from ..models import LoginThrottle, User
from .rows import ACCOUNT, count, insert, row_of

MAX_DELAY = 30  # seconds: the longest wait an account name earns in delay mode
CLAIM_SECONDS = 10  # a check's claim ends with its outcome; this long at most if the process died meanwhile


def name_key(username):
    """Return the key an account name is counted under (names are unique regardless of case)."""
    return username.lower()[:80]


def delay_for(failures):
    """Return the seconds a name waits after this many failures in a row (0 below LOGIN_MAX_FAILURES)."""
    over = failures - current_app.config["LOGIN_MAX_FAILURES"]
    return 0 if over < 0 else min(MAX_DELAY, 2 ** min(over, 10))


def delay_on():
    """Say whether account names earn a delay (LOCKOUT_MODE=delay)."""
    return current_app.config["LOCKOUT_MODE"] == "delay"


def claim(key, now):
    """Claim the check of a password for a name (inserting its row if new); return True unless another holds it."""
    table = LoginThrottle.__table__
    hold = now + timedelta(seconds=CLAIM_SECONDS)
    free = and_(or_(table.c.blocked_until.is_(None), table.c.blocked_until <= now),
                or_(table.c.checking_until.is_(None), table.c.checking_until <= now))
    statement = insert().values(kind=ACCOUNT, key=key, failures=0, window_started_at=now, last_failure_at=now,
                                refused=0, checking_until=hold)
    statement = statement.on_conflict_do_update(index_elements=[table.c.kind, table.c.key],
                                                set_={"checking_until": literal(hold, UTCDateTime())}, where=free)
    won = db.session.execute(statement.returning(table.c.key)).first() is not None
    db.session.commit()
    return won


def count_name(key, username):
    """Count a failure for a typed name; from LOGIN_MAX_FAILURES on it waits longer each time (audited once)."""
    now = now_utc()
    failures, _ = count(ACCOUNT, key, now)
    seconds = delay_for(failures)
    values = {"blocked_until": now + timedelta(seconds=seconds) if seconds else None, "checking_until": None}
    if failures == current_app.config["LOGIN_MAX_FAILURES"]:
        values["blocked_at"] = now  # the episode starts; refusals are counted from here
    db.session.execute(update(LoginThrottle).where(row_of(ACCOUNT, key)).values(**values))
    db.session.commit()
    if seconds and failures == current_app.config["LOGIN_MAX_FAILURES"]:
        user = db.session.scalar(select(User).where(User.username == username)) if username else None
        record("auth.throttled", f"log-ins as {username} slowed after {failures} failures in a row",
               outcome="failure", actor=username, user_id=user.id if user else None,
               details={"failures": failures, "max_delay_seconds": MAX_DELAY}, strict=False)


def lock_on():
    """Say whether failures lock the account (LOCKOUT_MODE=lock)."""
    return current_app.config["LOCKOUT_MODE"] == "lock"


def locked(user):
    """Say whether the user's account is locked now (LOCKOUT_MODE=lock): every attempt fails, right or not."""
    return bool(user.locked_until and user.locked_until > now_utc())


def count_lock(user, username):
    """Count a failure against the account in LOCKOUT_MODE=lock; at the limit it is locked (audited once)."""
    minutes = current_app.config["LOGIN_LOCK_MINUTES"]
    # One atomic statement counts the failure and, at the limit, locks and restarts the count: parallel
    # guesses each see their own count, and exactly one of them sees the lock it set.
    reached = User.failed_logins + 1 >= current_app.config["LOGIN_MAX_FAILURES"]
    failures = db.session.execute(
        update(User).where(User.id == user.id)
        .values(failed_logins=case((reached, 0), else_=User.failed_logins + 1),
                locked_until=case((reached, now_utc() + timedelta(minutes=minutes)), else_=User.locked_until))
        .returning(User.failed_logins).execution_options(synchronize_session=False)
    ).scalar_one()
    db.session.commit()
    if failures == 0:
        record("auth.locked", f"account {username} locked for {minutes} minutes after repeated failed log-ins",
               outcome="failure", actor=username, user_id=user.id, details={"minutes": minutes}, strict=False)


def release(username):
    """End the claim of a name whose password was right, keeping its failures: a second factor is still to come."""
    if delay_on():
        db.session.execute(update(LoginThrottle).where(row_of(ACCOUNT, name_key(username))).values(checking_until=None))
        db.session.commit()


def forget_account(user, username):
    """Forget the failures of a user who logged in: the account's lock count, the name's wait (the address keeps its
    count)."""
    if user.failed_logins or user.locked_until is not None:
        user.failed_logins, user.locked_until = 0, None
        db.session.commit()
    if delay_on():
        db.session.execute(delete(LoginThrottle).where(row_of(ACCOUNT, name_key(username))))
        db.session.commit()
