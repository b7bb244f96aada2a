"""Who may do what: the access decorators and the ownership helpers every blueprint uses.

Neutral ground: it imports models, never a blueprint's views, so any package may import it.
"""
from functools import wraps

from flask import abort
from flask_login import current_user, login_required
from sqlalchemy import select

from app.devices.models import Device
from app.extensions import db

__all__ = ["admin_required", "current_login", "get_device_or_404", "login_required", "user_devices"]


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


def get_device_or_404(device_id):
    """Return the current user's device, or 404 (the one place that decides who may touch a device)."""
    device = db.session.get(Device, device_id)
    if device is None or device.owner_id != current_user.id:
        abort(404)
    return device


def user_devices():
    """Return the current user's devices by name."""
    return db.session.scalars(select(Device).filter_by(owner_id=current_user.id).order_by(Device.name)).all()
