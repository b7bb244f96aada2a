"""The security summary for admins: the last 24 h of failed log-ins, lock-outs and blocks, host-key mismatches and
sessions, and the chain's state, each read from the trail itself with the indexes it has; and how this process's
background jobs went."""
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from app.dbtypes import now_utc
from app.extensions import db

from . import alerts, forwarding
from .models import AuditEvent
from .verification import last_recorded

WINDOW = timedelta(hours=24)
TOP = 10


@dataclass
class Tally:
    """How many events of one action, and the top values of one column among them: (value, count, last time)."""

    total: int = 0
    rows: list = field(default_factory=list)


@dataclass
class Summary:
    """Everything the summary tab shows; `since` is the window's start to the second, as the links say it."""

    since: datetime
    failed_by_ip: Tally
    failed_by_user: Tally
    locked: Tally
    blocked: Tally
    slowed: Tally
    mismatches: Tally
    sessions: Tally
    head_id: int
    verified: AuditEvent | None
    checkpoint: AuditEvent | None
    syslog: tuple | None
    alerts: tuple | None
    jobs: list | None  # None: no background jobs run in this process


def window_start(now=None):
    """Return the start of the last 24 h, cut to the second (the viewer's filters speak whole seconds)."""
    return ((now or now_utc()) - WINDOW).replace(microsecond=0)


def first_id_at(moment):
    """Return the id of the first event at or after moment, or None; ids follow time (both are given under one lock)."""
    return db.session.scalar(select(AuditEvent.id).where(AuditEvent.occurred_at >= moment)
                             .order_by(AuditEvent.occurred_at).limit(1))


def tally(action, column, first_id, last_id=None, since=None, limit=TOP):
    """Count one action's events with ids first_id..last_id (times from since) and the top values of column."""
    where = [AuditEvent.action == action, AuditEvent.id >= first_id]  # the (action, id) index finds these rows
    if last_id is not None:
        where.append(AuditEvent.id <= last_id)
    if since is not None:  # a clock stepped back can put an older time after first_id: the time decides
        where.append(AuditEvent.occurred_at >= since)
    total = db.session.scalar(select(func.count()).select_from(AuditEvent).where(*where))
    if not total:
        return Tally()
    count, last = func.count().label("n"), func.max(AuditEvent.occurred_at).label("last")
    rows = db.session.execute(select(column, count, last).where(*where).group_by(column)
                              .order_by(count.desc(), last.desc()).limit(limit)).all()
    return Tally(total, [tuple(row) for row in rows])


def newest(action):
    """Return the newest event of one action, or None."""
    return db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                              .order_by(AuditEvent.id.desc()).limit(1)).first()


def without_webhook(error):
    """Return an error message without the webhook's address, which often carries a token."""
    secret = current_app.config.get("ALERT_WEBHOOK_URL")
    return error.replace(secret, "(webhook)")[:200] if error and secret else error


def alert_queue():
    """Return the alert webhook's (depth, oldest age in seconds or None, newest error or None)."""
    depth, age, error = alerts.queue_status()
    return depth, age, without_webhook(error)


def jobs_report():
    """Return the status of this process's background jobs, or None when none run here (a development server)."""
    driver = current_app.extensions.get("jobs")  # the running jobs driver puts itself there: no import of it here
    if driver is None:
        return None
    return [replace(row, last_error=without_webhook(row.last_error)) for row in driver.report()]


def build(now=None):
    """Return the summary of the last 24 h and the chain's state."""
    since = window_start(now)
    first = first_id_at(since)
    config = current_app.config
    if first is None:  # nothing happened in the window
        empty = Tally()
        failed_by_ip = failed_by_user = locked = blocked = slowed = mismatches = sessions = empty
    else:
        failed_by_ip = tally("auth.login_failed", AuditEvent.source_ip, first, since=since)
        failed_by_user = tally("auth.login_failed", AuditEvent.actor, first, since=since)
        locked = tally("auth.locked", AuditEvent.actor, first, since=since)
        blocked = tally("auth.address_blocked", AuditEvent.source_ip, first, since=since)
        slowed = tally("auth.throttled", AuditEvent.actor, first, since=since)
        mismatches = tally("hostkey.mismatch", AuditEvent.target, first, since=since)
        sessions = tally("session.started", AuditEvent.actor, first, since=since)
    return Summary(
        since=since, failed_by_ip=failed_by_ip, failed_by_user=failed_by_user, locked=locked, blocked=blocked,
        slowed=slowed, mismatches=mismatches, sessions=sessions,
        head_id=db.session.scalar(select(func.max(AuditEvent.id))) or 0,
        verified=last_recorded(), checkpoint=newest("audit.checkpoint"),
        syslog=forwarding.queue_status() if config.get("SYSLOG_TARGETS") else None,
        alerts=alert_queue() if config.get("ALERT_WEBHOOK_URL") else None,
        jobs=jobs_report(),
    )
