"""Log-in sessions on the server: a row per log-in, checked on every request; revoke() ends one.

The database is the truth, so a log-out served by one process or node ends the cookie on all
of them, and a copy of an old cookie opens nothing.
"""
import hashlib
import secrets
from datetime import timedelta

from flask import abort, current_app, request
from sqlalchemy import select, update

from app.audit.events import AuditWriteError, record
from app.dbtypes import now_utc
from app.extensions import db
from app.signals import login_ended

from .models import LoginSession, User

# Why a log-in ended: the code goes into the trail and to its terminals, the words to people.
REASONS = {
    "logged_out": "logged out",
    "password_changed": "password changed",
    "ended_by_user": "ended by its user",
    "ended_by_admin": "ended by an admin",
    "user_disabled": "user disabled",
    "user_deleted": "user deleted",
    "expired": "expired",
}
# last_seen_at is refreshed at most this often: a write per request would serialise every page.
_TOUCH_EVERY = timedelta(seconds=60)


def token_id(token):
    """Return the row id of a cookie token."""
    return hashlib.sha256(token.encode()).hexdigest()


def start(user, method="password"):
    """Create the log-in session of a successful log-in; return its cookie token (audited first)."""
    token = secrets.token_urlsafe(32)
    now = now_utc()
    row = LoginSession(id=token_id(token), user_id=user.id, method=method, source_ip=request.remote_addr,
                       user_agent=(request.user_agent.string or "")[:256] or None, created_at=now, last_seen_at=now,
                       expires_at=now + timedelta(hours=current_app.config["SESSION_TTL_HOURS"]))
    db.session.add(row)
    db.session.commit()
    try:  # fail closed: a log-in that cannot be audited does not happen
        record("auth.login", "user logged in", actor=user.username, user_id=user.id,
               details={"login": row.handle, "method": method})
    except AuditWriteError:
        db.session.delete(row)
        db.session.commit()
        raise
    user.login_token, user.login_session = token, row
    return token


def load(token):
    """Return the user of a live log-in session token, with .login_session set; None otherwise."""
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        return None
    row = db.session.get(LoginSession, token_id(token))
    now = now_utc()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    user = db.session.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    if now - row.last_seen_at > _TOUCH_EVERY:
        db.session.execute(update(LoginSession).where(LoginSession.id == row.id).values(last_seen_at=now))
        db.session.commit()
    user.login_token, user.login_session = token, row
    return user


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
    """End the log-ins past their lifetime (reason expired): audited, and their terminals told."""
    rows = db.session.scalars(select(LoginSession).where(LoginSession.revoked_at.is_(None),
                                                         LoginSession.expires_at <= now_utc())).all()
    return sum(revoke(row, "expired", by="system") for row in rows)
