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
from app.auth.models import User
from app.devices.models import Device, DeviceTag
from app.extensions import db
from app.teams.models import GRANT_FOLDER, GRANT_TAG, Grant, GrantOwner, TeamMember

__all__ = ["admin_required", "covered_by", "current_login", "get_device_or_404", "login_required", "may_edit",
           "may_manage_host_keys", "shared_device_ids", "usable_by", "user_devices"]


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


@extend_visibility
def owners_read_tests_of_their_devices(user):
    """Let a device's owner read the connection tests an admin ran on it (None: the user owns no device)."""
    if not db.session.scalar(select(exists().where(Device.owner_id == user.id))):
        return None
    return and_(AuditEvent.action == "device.tested", AuditEvent.details["owner_id"].as_integer() == user.id)
