"""Terminals that end because their device went away, or because its owner's stored credentials may serve no more.

A terminal to a device connects with its owner's stored credentials: deleting the device (or its owner, which
deletes their devices) or disabling its owner ends every terminal on it, whoever typed in it. The holders close
them within a second (app.terminals.records.request_end); the first reason asked for wins.
"""
from sqlalchemy import or_, select

from app.terminals.models import TerminalSession
from app.terminals.records import request_end

from .models import Device

_NOT_ASKED_YET = TerminalSession.terminate_requested.is_(False)  # an earlier reason (say, user_deleted) stays


def end_deviceless():
    """Flag every open terminal whose device was deleted (reason device_deleted); return how many."""
    return len(request_end("device_deleted", TerminalSession.device_id.is_(None), _NOT_ASKED_YET))


def end_on_devices_of(owner_id, reason="owner_disabled"):
    """Flag the open terminals of other users on the devices of owner_id (reason owner_disabled); return how many.

    The owner's own terminals end with their log-ins (user_disabled).
    """
    others = or_(TerminalSession.user_id.is_(None), TerminalSession.user_id != owner_id)
    devices = select(Device.id).where(Device.owner_id == owner_id)
    return len(request_end(reason, TerminalSession.device_id.in_(devices), others, _NOT_ASKED_YET))
