"""The blocks that refuse log-ins now, as admins see them: listed, lifted by an admin, or ended by time."""
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, delete, or_, select, update

from app.audit.events import record
from app.dbtypes import now_utc
from app.extensions import db

from ..models import LoginThrottle, User
from .rows import ADDRESS, row_of


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
    if kind == "locked":
        return _unlock(key, by)
    now = now_utc()
    row = db.session.scalar(select(LoginThrottle).where(row_of(kind, key), LoginThrottle.blocked_until > now))
    if row is None:
        return False
    refused, failures = row.refused, row.failures
    # A lifted address starts counting afresh; a lifted name is forgotten.
    ended = db.session.execute(
        update(LoginThrottle).where(row_of(kind, key), LoginThrottle.blocked_until > now)
        .values(blocked_at=None, blocked_until=None, failures=0, refused=0, window_started_at=now)
    ).rowcount
    db.session.commit()
    if ended:
        what = f"address {key}" if kind == ADDRESS else f"wait of name {key}"
        record("auth.block_lifted", f"block of {what} lifted by {by} ({refused} attempts refused meanwhile)",
               details={"kind": kind, "key": key, "by": by, "failures": failures, "refused": refused}, strict=False)
    return bool(ended)


def _unlock(username, by):
    """Lift the lock of an account (LOCKOUT_MODE=lock), audited; return False if it was not locked."""
    user = db.session.scalar(select(User).where(User.username == username, User.locked_until > now_utc()))
    if user is None:
        return False
    user.locked_until, user.failed_logins = None, 0
    db.session.commit()
    record("auth.block_lifted", f"lock of account {username} lifted by {by}", user_id=user.id,
           details={"kind": "locked", "key": username, "by": by}, strict=False)
    return True


def sweep():
    """Report address blocks that ran out (once, with what they refused) and drop rows nothing needs any more."""
    now = now_utc()
    ended = db.session.execute(
        select(LoginThrottle.kind, LoginThrottle.key, LoginThrottle.blocked_at, LoginThrottle.failures,
               LoginThrottle.refused)
        .where(LoginThrottle.blocked_at.is_not(None), LoginThrottle.blocked_until <= now)).all()
    reported = sum(_report_end(*row) for row in ended)
    cutoff = now - timedelta(minutes=current_app.config["LOGIN_IP_WINDOW_MINUTES"])
    stale = and_(LoginThrottle.window_started_at <= cutoff, LoginThrottle.blocked_at.is_(None),
                 or_(LoginThrottle.blocked_until.is_(None), LoginThrottle.blocked_until <= now))
    if db.session.scalar(select(LoginThrottle.key).where(stale).limit(1)) is not None:
        db.session.execute(delete(LoginThrottle).where(stale))
    db.session.commit()
    return reported


def _report_end(kind, key, blocked_at, failures, refused):
    """Mark one ended block reported; audit an address's end (one process of the cluster wins); return 1 if so."""
    won = db.session.execute(
        update(LoginThrottle).where(row_of(kind, key), LoginThrottle.blocked_at == blocked_at).values(blocked_at=None)
    ).rowcount
    db.session.commit()
    if not (won and kind == ADDRESS):  # a name's short wait ends quietly; its start was audited (auth.throttled)
        return 0
    record("auth.block_lifted", f"block of address {key} ended ({refused} attempts refused meanwhile)",
           actor="system", details={"kind": kind, "key": key, "by": None, "reason": "expired",
                                    "failures": failures, "refused": refused}, strict=False)
    return 1
