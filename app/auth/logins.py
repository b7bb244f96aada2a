"""Log-ins on the server: a row per log-in (table login_sessions), checked on every request; revoke() ends one.

A log-in ends at its absolute lifetime (SESSION_TTL_HOURS) or after SESSION_IDLE_MINUTES without activity:
any request but a background poll (POLL_HEADER), and terminal input.

The database is the truth, so a log-out served by one process or node ends the cookie on all
of them, and a copy of an old cookie opens nothing.
"""
import hashlib
import math
import secrets
from datetime import timedelta

from urllib.parse import urlsplit

from flask import abort, current_app, request, session, url_for
from flask_login import login_user
from sqlalchemy import select, update
from sqlalchemy.orm.attributes import set_committed_value

from app.audit.events import AuditWriteError, record
from app.dbtypes import now_utc
from app.extensions import db
from app.signals import login_ended

from .models import LoginSession, User

# Why a log-in ended: the code goes into the trail and to its terminals, the words to people.
REASONS = {
    "logged_out": "logged out",
    "password_changed": "password changed",
    "second_factor_changed": "second factor set up or removed",
    "ended_by_user": "ended by its user",
    "ended_by_admin": "ended by an admin",
    "user_disabled": "user disabled",
    "user_deleted": "user deleted",
    "expired": "expired",
    "idle_timeout": "no activity for too long",
}
# last_seen_at is refreshed at most this often: a write per request would serialise every page.
_TOUCH_EVERY = timedelta(seconds=60)
# Requests with this header are background polls (htmx's "every", the badge's clock): not the user's activity.
POLL_HEADER = "X-Gatehouse-Poll"
# The badge offers "Stay logged in" in the last two minutes, whatever the idle limit (under two minutes: always).
WARN_SECONDS = 120


def token_id(token):
    """Return the row id of a cookie token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _new_row(user, method, expires_at=None):
    """Store a new log-in of user from this request (ending at expires_at, else after SESSION_TTL_HOURS); return
    its cookie token and its row."""
    token = secrets.token_urlsafe(32)
    now = now_utc()
    row = LoginSession(id=token_id(token), user_id=user.id, method=method, source_ip=request.remote_addr,
                       user_agent=(request.user_agent.string or "")[:256] or None, created_at=now, last_seen_at=now,
                       active_at=now,
                       expires_at=expires_at or now + timedelta(hours=current_app.config["SESSION_TTL_HOURS"]))
    db.session.add(row)
    db.session.commit()
    return token, row


def start(user, method="password", details=None):
    """Create the row of a successful log-in; return its cookie token (audited first, with details)."""
    token, row = _new_row(user, method)
    try:  # fail closed: a log-in that cannot be audited does not happen
        record("auth.login", "user logged in", actor=user.username, user_id=user.id,
               details={"login": row.handle, "method": method, **(details or {})})
    except AuditWriteError:
        db.session.delete(row)
        db.session.commit()
        raise
    user.login_token, user.login_session = token, row
    return token


def renew(user, reason):
    """Give this browser's log-in a new token after its credentials changed (OWASP session guidance).

    Every log-in of the user from before the change ends with reason, this browser's old token included (a copy of
    the cookie taken before opens nothing, and the terminals opened with it close); the browser goes on under a
    new token with the same absolute end. Return the new row.
    """
    old = user.login_session
    token, row = _new_row(user, old.method, old.expires_at)
    revoke_user(user.id, reason, by=user.username, keep=row.id)
    user.login_token, user.login_session = token, row
    login_user(user)  # the cookie now carries the new token
    return row


def log_in(user, method="password", details=None):
    """Finish any successful log-in (password or single sign-on): its row (audited, else 503), the cookie."""
    try:
        start(user, method=method, details=details)  # fail closed: a log-in that cannot be audited does not happen
    except AuditWriteError:
        abort(503, "The audit trail cannot be written; log-in is refused until it can.")
    user.last_login_at = now_utc()
    db.session.commit()
    session.clear()
    login_user(user)
    session.permanent = True  # the cookie may outlive a browser restart; the row decides


def safe_next(target):
    """Return where a finished log-in goes: target if it is a path on this site, else the home page."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("terminals.index")


def load(token):
    """Return the user of a live log-in's token, with .login_session set; None otherwise."""
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        return None
    row = db.session.get(LoginSession, token_id(token))
    now = now_utc()
    if row is None or row.revoked_at is not None or row.expires_at <= now or _idle_until(row) <= now:
        return None  # an idle one is refused at once; the expired-log-ins job revokes it (audited) within a second
    user = db.session.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    touch = {}
    if now - row.last_seen_at > _TOUCH_EVERY:
        touch["last_seen_at"] = now
    if not request.headers.get(POLL_HEADER) and now - row.active_at >= touch_every():
        touch["active_at"] = now
    if touch:
        db.session.execute(update(LoginSession).where(LoginSession.id == row.id).values(**touch))
        db.session.commit()
        for name, value in touch.items():
            set_committed_value(row, name, value)
    user.login_token, user.login_session = token, row
    return user


def idle_limit():
    """Return how long a log-in may go without activity (SESSION_IDLE_SECONDS), or None when there is no limit."""
    seconds = current_app.config["SESSION_IDLE_SECONDS"]
    return timedelta(seconds=seconds) if seconds else None


def touch_every():
    """Return how often activity is written: once a minute, or more often for an idle limit under 15 minutes."""
    limit = idle_limit()
    return _TOUCH_EVERY if limit is None else min(_TOUCH_EVERY, max(timedelta(seconds=1), limit / 15))


def _idle_until(row):
    """Return when a log-in ends for lack of activity (its absolute end when there is no idle limit)."""
    limit = idle_limit()
    return row.expires_at if limit is None else min(row.expires_at, row.active_at + limit)


def seconds_left(row):
    """Return the seconds until a log-in ends, by its idle limit or its absolute lifetime, whichever first, rounded
    up: the badge leaves at 0, which must mean ended (0.4 s left, rounded down, sent it to a log-in page that still
    saw the log-in and sent it back)."""
    return max(0, math.ceil((_idle_until(row) - now_utc()).total_seconds()))


def note_activity(row):
    """Count now as the log-in's activity (the "Stay logged in" button)."""
    now = now_utc()
    db.session.execute(update(LoginSession).where(LoginSession.id == row.id, LoginSession.revoked_at.is_(None))
                       .values(active_at=now, last_seen_at=now))
    db.session.commit()
    set_committed_value(row, "active_at", now)


def note_terminal_input(login_ids):
    """Count terminal input as activity of these log-ins (the terminals batch it: at most once per touch_every())."""
    if login_ids:
        with db.engine.begin() as conn:
            conn.execute(update(LoginSession).where(LoginSession.id.in_(login_ids), LoginSession.revoked_at.is_(None))
                         .values(active_at=now_utc()))


def revoke(row, reason, by=None):
    """End one log-in (once: a second call finds it ended and does nothing); tell its terminals."""
    if reason not in REASONS:
        raise ValueError(f"unknown revoke reason {reason!r}")
    ended = db.session.execute(
        update(LoginSession).where(LoginSession.id == row.id, LoginSession.revoked_at.is_(None))
        .values(revoked_at=now_utc(), revoke_reason=reason, revoked_by=by)
    ).rowcount
    db.session.commit()
    if not ended:
        return False
    owner = db.session.get(User, row.user_id)
    name = owner.username if owner else str(row.user_id)
    details = {"login": row.handle, "user": name, "reason": reason, "by": by, "login_ip": row.source_ip}
    if reason == "logged_out":
        record("auth.logout", "user logged out", details=details, strict=False)
    else:
        record("auth.session_revoked", f"ended log-in {row.handle} of {name} ({REASONS[reason]})",
               details=details, strict=False)
    login_ended.send(current_app._get_current_object(), login_id=row.id, reason=reason)
    return True


def revoke_user(user_id, reason, by=None, keep=None):
    """End every active log-in of a user, except keep (the row id of the log-in that asked)."""
    rows = db.session.scalars(active().where(LoginSession.user_id == user_id)).all()
    return sum(revoke(row, reason, by) for row in rows if row.id != keep)


def active():
    """Return a select of the log-ins that are neither revoked nor expired, newest first."""
    return (select(LoginSession).where(LoginSession.revoked_at.is_(None), LoginSession.expires_at > now_utc())
            .order_by(LoginSession.created_at.desc()))


def get_active_or_404(login_handle, user):
    """Return an active log-in by its handle that user may end (their own; an admin: anyone's)."""
    if not (isinstance(login_handle, str) and len(login_handle) == 12 and login_handle.isalnum()):
        abort(404)
    query = active().where(LoginSession.id.startswith(login_handle.lower()))
    if not user.is_admin:
        query = query.where(LoginSession.user_id == user.id)
    row = db.session.scalars(query).first()
    return row or abort(404)


def expire_due():
    """End the log-ins past their lifetime (reason expired) or idle too long (idle_timeout): audited, terminals told."""
    now = now_utc()
    rows = db.session.scalars(select(LoginSession).where(LoginSession.revoked_at.is_(None),
                                                         LoginSession.expires_at <= now)).all()
    ended = sum(revoke(row, "expired", by="system") for row in rows)
    limit = idle_limit()
    if limit is not None:
        rows = db.session.scalars(select(LoginSession).where(LoginSession.revoked_at.is_(None),
                                                             LoginSession.active_at <= now - limit)).all()
        ended += sum(revoke(row, "idle_timeout", by="system") for row in rows)
    return ended
