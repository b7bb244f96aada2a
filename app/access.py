"""Who may do what: the access decorators and the device rules every blueprint uses.

A device may be used by its owner and by the members of a team granted its folder or one of its tags, where
the grant names the device's owner (or the owner is an admin), and never once its owner is disabled; it may be
edited (and its stored credentials used for a connection test, at its stored address only) by its owner and by
admins who may use it. Neutral ground: it imports models, never a blueprint's views, so any package may import it.
"""
from functools import wraps

from flask import abort
from flask_login import current_user, login_required
from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import aliased

from app.audit.models import AuditEvent
from app.audit.query import extend_visibility
from app.auth.models import LoginSession, User
from app.dbtypes import now_utc
from app.devices.models import Device, DeviceTag
from app.extensions import db
from app.teams.models import GRANT_FOLDER, GRANT_TAG, Grant, GrantOwner, TeamMember
from app.terminals.models import TerminalSession

__all__ = ["admin_required", "covered_by", "current_login", "get_device_or_404", "get_session_or_404", "login_required",
           "may_edit", "may_manage_host_keys", "may_read_session", "may_resume", "may_transfer_files", "may_watch",
           "own_sessions", "readable_sessions", "resumable_sessions", "sessions_on_shared_devices", "shared_device_ids",
           "usable_by", "user_devices", "visible_open", "visible_sessions", "watch_refusals"]


def admin_required(view):
    """Let only administrators through."""

    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def current_login():
    """Return the log-in session row of the current request (None when nobody is logged in)."""
    return getattr(current_user, "login_session", None) if current_user.is_authenticated else None


def covers(device, grant=Grant):
    """Return the condition: grant (the Grant entity or an alias) covers device (the Device entity or an alias).

    A folder or tag name is free text any owner may set on their own devices, so the name alone covers nothing:
    the device's owner must be one the admin chose for the grant, or an admin.
    """
    # The device may sit two queries up (a terminal's user -> a grant -> this): correlate it by name.
    tagged = exists().where(DeviceTag.device_id == device.id, DeviceTag.tag == grant.value).correlate_except(DeviceTag)
    by_name = or_(and_(grant.kind == GRANT_FOLDER, device.folder == grant.value), and_(grant.kind == GRANT_TAG, tagged))
    owner = aliased(User)
    chosen = exists().where(GrantOwner.grant_id == grant.id, GrantOwner.user_id == device.owner_id)
    admin = exists().where(owner.id == device.owner_id, owner.is_admin)
    return and_(by_name, or_(chosen.correlate_except(GrantOwner), admin.correlate_except(owner)))


def _grants_covering(device, user_id, trail_only):
    """Select the grants to the teams of user_id (a value or a correlated column) that cover device."""
    query = (select(Grant.id).join(TeamMember, TeamMember.team_id == Grant.team_id)
             .where(TeamMember.user_id == user_id, covers(device)).correlate_except(Grant, TeamMember))
    return query.where(Grant.shares_trail) if trail_only else query


def shared_device_ids(user_id, trail_only=False):
    """Select the ids of the devices that grants to the user's teams cover (with trail_only: grants sharing the trail)."""
    device = aliased(Device)  # its own name: a query on Device that embeds this must not correlate it away
    return select(device.id).where(exists(_grants_covering(device, user_id, trail_only)))


def covered_by(grant_id):
    """Select the ids of the devices one grant covers now."""
    return select(Device.id).join(Grant, covers(Device)).where(Grant.id == grant_id)


def _owner_enabled(device):
    """Return the condition: the device's owner is not disabled (their stored credentials serve nobody then)."""
    owner = aliased(User)
    return exists().where(owner.id == device.owner_id, ~owner.disabled).correlate_except(owner)


def usable_by(user_id):
    """Return the condition on Device: the user (an id or a correlated column) may use it."""
    return and_(_owner_enabled(Device),
                or_(Device.owner_id == user_id, exists(_grants_covering(Device, user_id, trail_only=False))))


def may_manage_host_keys(user):
    """Say whether user may accept a device's changed host key or forget a stored one: admins only."""
    return bool(user.is_admin)


def may_transfer_files(user, owner_id, device):
    """Say whether user may use the files (SFTP) of a terminal that owner_id opened to device: only that owner, while
    enabled, and only when the device allows file transfer. Admins watch others' terminals; they never use them."""
    return bool(user.id == owner_id and not user.disabled and device is not None and device.allow_file_transfer)


def may_edit(user, device):
    """Say whether user may change or delete device, or test its stored credentials: its owner, or an admin."""
    return device.owner_id == user.id or user.is_admin


def get_device_or_404(device_id, edit=False):
    """Return a device the current user may use (with edit: may also edit), else 404 (403 when only usable).

    The one place that decides who may touch a device.
    """
    device = db.session.scalar(select(Device).where(Device.id == device_id, usable_by(current_user.id)))
    if device is None:
        abort(404)
    if edit and not may_edit(current_user, device):
        abort(403)
    return device


def user_devices(user=None):
    """Return the devices the user (by default the current one) may use, by name."""
    user_id = (user or current_user).id
    return db.session.scalars(select(Device).where(usable_by(user_id)).order_by(Device.name, Device.id)).all()


# Sessions. A session shows in lists (the trail, Connected now) to those who may see it; its content (page,
# recording, commands) is read only once it ended, or by its own user: reading another user's open terminal
# is watching, which admins do through Watch, and the user is told.

def visible_sessions(user):
    """Return a select of the sessions user may see listed (the trail's rule): an admin all, anyone else their own
    and those on devices whose trail a grant shares with their teams (docs/access.md)."""
    query = select(TerminalSession)
    if user.is_admin:
        return query
    own = and_(TerminalSession.user_id == user.id, TerminalSession.started_at >= user.created_at)
    return query.where(or_(own, TerminalSession.device_id.in_(shared_device_ids(user.id, trail_only=True))))


def visible_open(user):
    """Return the open sessions user may see (visible_sessions), oldest first."""
    query = visible_sessions(user).where(TerminalSession.ended_at.is_(None)).order_by(TerminalSession.started_at)
    return db.session.scalars(query).all()


def may_read_session(user, session):
    """Say whether user may read a visible session's content (page, recording, commands): ended, or their own."""
    return session.ended_at is not None or session.user_id == user.id


def may_resume(user, session):
    """Say whether user may attach a browser to a session again, while it is open: its owner only (admins watch,
    read-only)."""
    return session.user_id == user.id and session.started_at >= user.created_at


def _owned_by(user):
    """Return a select of the sessions user opened (may_resume's rule, in SQL)."""
    return select(TerminalSession).where(TerminalSession.user_id == user.id,
                                         TerminalSession.started_at >= user.created_at)


def own_sessions(user, ids):
    """Return a select of the sessions with these ids that user may act in as their owner (may_resume): typing in
    several at once, resuming, their files."""
    return _owned_by(user).where(TerminalSession.id.in_(ids))


def resumable_sessions(user):
    """Return the open sessions user may resume (may_resume), oldest first: the terminal page restores them."""
    query = _owned_by(user).where(TerminalSession.ended_at.is_(None)).order_by(TerminalSession.started_at)
    return db.session.scalars(query).all()


def readable_sessions(user):
    """Return a select of the sessions whose content user may read: visible, and ended or their own."""
    return visible_sessions(user).where(or_(TerminalSession.ended_at.is_not(None), TerminalSession.user_id == user.id))


def get_session_or_404(session_id, user):
    """Return a session user may see, or 404 (never 403: another user's session does not exist for them).

    Whether its content may be read yet is may_read_session's answer.
    """
    row = db.session.scalar(visible_sessions(user).where(TerminalSession.id == session_id))
    if row is None:
        abort(404)
    return row


def owners_read_events_of_their_sessions(user):
    """Let a session's user read every event of it: who watched, read or exported it, who ended it."""
    own = select(TerminalSession.id).where(TerminalSession.user_id == user.id,
                                           TerminalSession.started_at >= user.created_at)
    if not db.session.scalar(select(exists(own))):
        return None  # no session of theirs: the viewer's query stays as simple as before
    return AuditEvent.session_id.in_(own)


def sessions_on_shared_devices(user_id):
    """Select the ids of the terminal sessions on devices whose trail a grant shares with the user's teams."""
    return select(TerminalSession.id).where(TerminalSession.device_id.in_(shared_device_ids(user_id, trail_only=True)))


def shared_sessions(user):
    """Let a member read the events of sessions on devices a trail-sharing grant covers (None: no such grant)."""
    if not db.session.scalar(select(exists(shared_device_ids(user.id, trail_only=True)))):
        return None  # the usual case keeps the viewer's query as simple as before
    return AuditEvent.session_id.in_(sessions_on_shared_devices(user.id))


# Watching: an admin watches another user's open terminal through an active log-in; the watch ends as soon as
# either is no longer so (live watchers are checked each second and on every log-in's end).

def may_watch(user):
    """Say whether user may watch other users' open terminals (read-only, the user told): enabled admins."""
    return bool(user.is_admin and not user.disabled)


def watch_refusals(watchers):
    """Return {(user id, log-in id): reason} for those watchers (such pairs) who may not watch any more."""
    watchers = set(watchers)
    if not watchers:
        return {}
    users = {row.id: row for row in db.session.execute(
        select(User.id, User.is_admin, User.disabled).where(User.id.in_({u for u, _ in watchers})))}
    logins = {row.id: row for row in db.session.execute(
        select(LoginSession.id, LoginSession.revoked_at, LoginSession.revoke_reason, LoginSession.expires_at)
        .where(LoginSession.id.in_({login for _, login in watchers if login})))}
    now = now_utc()
    refused = {(u, login): _watch_refusal(users.get(u), logins.get(login), login, now) for u, login in watchers}
    return {pair: reason for pair, reason in refused.items() if reason}


def _watch_refusal(user, login, login_id, now):
    """Return why a watcher may not watch any more (a log-in end reason, user_*, not_admin), or None."""
    if user is None:
        return "user_deleted"
    if login_id and (login is None or login.revoked_at is not None):
        return (login.revoke_reason if login else None) or "logged_out"
    if user.disabled:
        return "user_disabled"
    if login is not None and login.expires_at <= now:
        return "expired"
    return None if user.is_admin else "not_admin"


def owners_read_tests_of_their_devices(user):
    """Let a device's owner read the connection tests an admin ran on it (None: the user owns no device)."""
    if not db.session.scalar(select(exists().where(Device.owner_id == user.id))):
        return None
    return and_(AuditEvent.action == "device.tested", AuditEvent.details["owner_id"].as_integer() == user.id)


def init_app(_app):
    """Let the trail show a non-admin the events of their sessions, of shared trails and of tests on their devices."""
    for rule in (owners_read_events_of_their_sessions, shared_sessions, owners_read_tests_of_their_devices):
        extend_visibility(rule)
