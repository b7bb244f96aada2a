"""The review of the trail that PCI DSS 10.4 asks for: the period since the last review, what in it needs a look,
marking it reviewed (audit.reviewed), and the alert when a period stays unreviewed too long."""
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import and_, func, or_, select, true

from app.dbtypes import iso_utc, now_utc
from app.extensions import db

from .events import record
from .models import AuditEvent
from .query import time_arg
from .summary import tally

REVIEWED, OVERDUE = "audit.reviewed", "audit.review_overdue"
SEVERE = ("warning", "critical")
HOSTKEY_ACTIONS = ("hostkey.trusted", "hostkey.mismatch", "hostkey.replaced", "hostkey.forgotten")
LISTED = 20  # events listed per section; the counts and links cover them all
HISTORY = 5
COMMENT_MAX = 2000


class ReviewError(ValueError):
    """A review that cannot be recorded as asked; the message says why."""


@dataclass
class Period:
    """The events from_id..to_id (ids are gap-free and follow time); start and end are their times."""

    from_id: int
    to_id: int
    start: datetime | None = None
    end: datetime | None = None

    @property
    def empty(self):
        """True if the period holds no event."""
        return self.start is None

    @property
    def size(self):
        """Return how many events the period holds."""
        return 0 if self.empty else self.to_id - self.from_id + 1

    def args(self, **filters):
        """Return viewer filters for this period (whole seconds around it) plus the given ones."""
        return {**filters, "since": time_arg(self.start), "until": time_arg(self.end, round_up=True)}


def reviewed_up_to():
    """Return the last event id the newest review covered (0 before any review)."""
    last = _newest(REVIEWED)
    return int((last.details or {}).get("to_id", 0)) if last else 0


def _newest(action):
    """Return the newest event of one action, or None."""
    return db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                              .order_by(AuditEvent.id.desc()).limit(1)).first()


def _time_of(event_id):
    """Return when an event happened."""
    return db.session.scalar(select(AuditEvent.occurred_at).where(AuditEvent.id == event_id))


def period(to_id=None):
    """Return the unreviewed period: after the last review (or from the oldest kept event) up to to_id or the head."""
    first = db.session.scalar(select(func.min(AuditEvent.id)).where(AuditEvent.id > reviewed_up_to()))
    last = db.session.scalar(select(func.max(AuditEvent.id))) if to_id is None else to_id
    if first is None or last is None or first > last:
        return Period(first or 0, last or 0)
    return Period(first, last, _time_of(first), _time_of(last))


def _in(p, *where):
    """Select the events of period p that match where, newest first."""
    return (select(AuditEvent).where(AuditEvent.id >= p.from_id, AuditEvent.id <= p.to_id, *where)
            .order_by(AuditEvent.id.desc()))


def outside_hours(local, config):
    """Return True if a local time (in AUDIT_TIMEZONE) falls on a weekend or outside AUDIT_USUAL_HOURS."""
    start, end = config["AUDIT_USUAL_HOURS"]
    return local.weekday() >= 5 or not start <= local.hour < end


def _late_sessions(p, config):
    """Return how many sessions of p started outside usual hours, and the newest of them as (event, local time)."""
    zone = ZoneInfo(config["AUDIT_TIMEZONE"])
    started = db.session.execute(select(AuditEvent.id, AuditEvent.occurred_at).where(
        AuditEvent.action == "session.started", AuditEvent.id >= p.from_id, AuditEvent.id <= p.to_id)).all()
    late = sorted(((row.id, local) for row in started
                   if outside_hours(local := row.occurred_at.astimezone(zone), config)), reverse=True)
    shown = dict(late[:LISTED])
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.id.in_(shown)).order_by(AuditEvent.id.desc()))
    return len(late), [(event, shown[event.id]) for event in events]


def _new_admins(p):
    """Return the events of p that made someone an admin: a role changed to admin, an admin created."""
    made = or_(and_(AuditEvent.action == "user.role_changed", AuditEvent.details["role"].as_string() == "admin"),
               and_(AuditEvent.action == "user.created", AuditEvent.details["admin"].as_boolean() == true()))
    return db.session.scalars(_in(p, AuditEvent.action.in_(("user.role_changed", "user.created")), made)).all()


def findings(p):
    """Return what the review of period p shows: counts and the newest events of each section."""
    if p.empty:
        return None
    config = current_app.config
    severe = dict(db.session.execute(
        select(AuditEvent.severity, func.count()).where(AuditEvent.id >= p.from_id, AuditEvent.id <= p.to_id,
                                                        AuditEvent.severity.in_(SEVERE))
        .group_by(AuditEvent.severity)).all())
    hostkeys = dict(db.session.execute(
        select(AuditEvent.action, func.count()).where(AuditEvent.id >= p.from_id, AuditEvent.id <= p.to_id,
                                                      AuditEvent.action.in_(HOSTKEY_ACTIONS))
        .group_by(AuditEvent.action)).all())
    late_count, late = _late_sessions(p, config)
    admins = _new_admins(p)
    return {
        "severe": {level: severe.get(level, 0) for level in SEVERE},
        "severe_events": db.session.scalars(_in(p, AuditEvent.severity.in_(SEVERE)).limit(LISTED)).all(),
        "failed_by_ip": tally("auth.login_failed", AuditEvent.source_ip, p.from_id, p.to_id, limit=5),
        "failed_by_user": tally("auth.login_failed", AuditEvent.actor, p.from_id, p.to_id, limit=5),
        "admins": admins,
        "hostkeys": {action: hostkeys.get(action, 0) for action in HOSTKEY_ACTIONS},
        "hostkey_events": db.session.scalars(_in(p, AuditEvent.action.in_(HOSTKEY_ACTIONS)).limit(LISTED)).all(),
        "late_sessions": late,
        "counts": {
            "critical": severe.get("critical", 0), "warning": severe.get("warning", 0),
            "failed_logins": db.session.scalar(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.action == "auth.login_failed", AuditEvent.id >= p.from_id, AuditEvent.id <= p.to_id)),
            "new_admins": len(admins), "hostkey_changes": sum(hostkeys.values()),
            "sessions_outside_hours": late_count,
        },
    }


def history(limit=HISTORY):
    """Return the newest reviews, newest first, each with the period it covered: [(event, Period)]."""
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == REVIEWED)
                                .order_by(AuditEvent.id.desc()).limit(limit)).all()
    return [(event, covered(event)) for event in events]


def covered(event):
    """Return the period a review event says it covered."""
    details = event.details or {}
    start, end = (datetime.fromisoformat(details[key].replace("Z", "+00:00")) if details.get(key) else None
                  for key in ("from", "to"))
    return Period(details.get("from_id", 0), details.get("to_id", 0), start, end)


def _clean_comment(raw):
    """Return the comment trimmed; refuse one too long or with control characters other than line breaks and tabs."""
    comment = (raw or "").replace("\r\n", "\n").strip()
    if len(comment) > COMMENT_MAX:
        raise ReviewError(f"The comment is longer than {COMMENT_MAX} characters.")
    if any((ord(char) < 32 and char not in "\n\t") or ord(char) == 127 for char in comment):
        raise ReviewError("The comment may not contain control characters.")
    return comment


def mark(raw_to_id, raw_comment):
    """Record audit.reviewed for the events after the last review up to to_id (the head the reviewer was shown)."""
    comment = _clean_comment(raw_comment)
    raw = (raw_to_id or "").strip()
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise ReviewError("The review names no period: reload the page and review again.")
    to_id = int(raw)
    head = db.session.scalar(select(func.max(AuditEvent.id))) or 0
    if to_id > head:
        raise ReviewError(f"Event {to_id} does not exist (the newest is {head}): nothing after what you were shown "
                          "can be marked reviewed.")
    p = period(to_id)
    if p.empty:
        raise ReviewError(f"Events up to {reviewed_up_to()} are already reviewed: reload the page to review what "
                          "came after.")
    counts = findings(p)["counts"]
    details = {"from_id": p.from_id, "to_id": p.to_id, "from": iso_utc(p.start), "to": iso_utc(p.end),
               "comment": comment, "counts": counts}
    return record(REVIEWED, f"reviewed audit events {p.from_id} to {p.to_id} ({p.size} events)", details=details)


def overdue(p, now=None):
    """Return True if the oldest event of the unreviewed period p is older than AUDIT_REVIEW_DAYS."""
    return not p.empty and (now or now_utc()) - p.start > timedelta(days=current_app.config["AUDIT_REVIEW_DAYS"])


def check_overdue(now=None):
    """Record audit.review_overdue when the oldest unreviewed event is older than AUDIT_REVIEW_DAYS; at most once a day
    for the same unreviewed period. Return the event's row, or None."""
    now = now or now_utc()
    p = period()
    if not overdue(p, now):
        return None
    last = _newest(OVERDUE)
    same_period = last is not None and (last.details or {}).get("from_id") == p.from_id
    if same_period and now - last.occurred_at < timedelta(days=1):
        return None
    days, late = current_app.config["AUDIT_REVIEW_DAYS"], (now - p.start).days
    details = {"since": iso_utc(p.start), "days": late, "unreviewed": p.size, "from_id": p.from_id,
               "limit_days": days}
    return record(OVERDUE, f"audit trail not reviewed since {iso_utc(p.start)[:19]}Z ({late} days, {p.size} events; "
                           f"a review is due every {days} days)", actor="system", details=details, strict=False)
