"""The throttle's table: one row per counted address or name, and the atomic statements both kinds share.

Every count is one statement (INSERT ... ON CONFLICT DO UPDATE ... RETURNING, on SQLite and PostgreSQL); a block
is set by a conditional UPDATE that only one request can win, so each block is audited once.
"""
from datetime import timedelta

from flask import current_app
from sqlalchemy import and_, case, literal, or_, update
from sqlalchemy.dialects import postgresql, sqlite

from app.dbtypes import UTCDateTime
from app.extensions import db

from ..models import LoginThrottle

ADDRESS, ACCOUNT = "ip", "account"


def row_of(kind, key):
    """Return a where-clause for one throttle row."""
    return and_(LoginThrottle.kind == kind, LoginThrottle.key == key)


def insert():
    """Return the INSERT construct of this database's dialect (both know ON CONFLICT ... RETURNING)."""
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(LoginThrottle.__table__)


def count(kind, key, now):
    """Count one failure of a row, restarting its window when that has passed; return (failures, blocked_until)."""
    table = LoginThrottle.__table__
    stamp = literal(now, UTCDateTime())
    cutoff = now - timedelta(minutes=current_app.config["LOGIN_IP_WINDOW_MINUTES"])
    fresh = table.c.window_started_at <= cutoff
    statement = insert().values(kind=kind, key=key, failures=1, window_started_at=now, last_failure_at=now, refused=0)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.kind, table.c.key],
        set_={"failures": case((fresh, 1), else_=table.c.failures + 1),
              "window_started_at": case((fresh, stamp), else_=table.c.window_started_at),
              "last_failure_at": stamp},
    ).returning(table.c.failures, table.c.blocked_until)
    return db.session.execute(statement).one()


def block(kind, key, now, until):
    """Set a block unless one is running; return True for the one request that set it."""
    return db.session.execute(
        update(LoginThrottle).where(row_of(kind, key), or_(LoginThrottle.blocked_until.is_(None),
                                                           LoginThrottle.blocked_until <= now))
        .values(blocked_at=now, blocked_until=until, refused=0)
    ).rowcount == 1


def count_refused(kind, key):
    """Count an attempt turned away unchecked (its row's refused; no audit event of its own)."""
    db.session.execute(update(LoginThrottle).where(row_of(kind, key)).values(refused=LoginThrottle.refused + 1))
    db.session.commit()
