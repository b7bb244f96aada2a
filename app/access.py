"""Who may do what: the access decorators and the device rules every blueprint uses.

A device may be used by its owner and by the members of a team granted its folder or one of its tags;
it may be edited (and its stored credentials used for a connection test) by its owner and by admins
who may use it. Neutral ground: it imports models, never a blueprint's views, so any package may import it.
"""
from functools import wraps

from flask import abort
from flask_login import current_user, login_required
from sqlalchemy import or_, select

from app.devices.models import Device, DeviceTag
from app.extensions import db
from app.teams.models import GRANT_FOLDER, GRANT_TAG, Grant, TeamMember

__all__ = ["admin_required", "current_login", "get_device_or_404", "login_required", "may_edit", "may_manage_host_keys",
           "shared_device_ids", "usable_by", "user_devices"]


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


def _granted(user_id, kind, trail_only):
    """Select the folder or tag names granted to the teams of user_id (a value or a correlated column)."""
    query = (select(Grant.value).join(TeamMember, TeamMember.team_id == Grant.team_id)
             .where(TeamMember.user_id == user_id, Grant.kind == kind))
    return query.where(Grant.shares_trail) if trail_only else query


def shared_device_ids(user_id, trail_only=False):
    """Select the ids of the devices that grants to the user's teams cover (with trail_only: grants sharing the trail)."""
    tagged = select(DeviceTag.device_id).where(DeviceTag.tag.in_(_granted(user_id, GRANT_TAG, trail_only)))
    return select(Device.id).where(or_(Device.folder.in_(_granted(user_id, GRANT_FOLDER, trail_only)),
                                       Device.id.in_(tagged)))


def usable_by(user_id):
    """Return the condition on Device: the user (an id or a correlated column) may use it."""
    return or_(Device.owner_id == user_id, Device.id.in_(shared_device_ids(user_id)))


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

