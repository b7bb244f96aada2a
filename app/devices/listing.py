"""What the device list shows one user: devices by folder, favourites, recent ones, owners, edit rights."""
from flask_login import current_user
from sqlalchemy import func, select

from app.access import may_edit, user_devices
from app.auth.models import User
from app.extensions import db
from app.terminals.models import TerminalSession

from .models import Favourite

RECENT = 5  # devices under "Recent": the ones this user opened last


def listing():
    """Return what the device list shows the current user: the devices grouped by folder, favourites, recent ones,
    their owners' names, the names two devices share and which the user may edit."""
    devices = user_devices()
    by_id = {d.id: d for d in devices}
    favourite_ids = set(db.session.scalars(select(Favourite.device_id).where(Favourite.user_id == current_user.id)))
    last = func.max(TerminalSession.started_at)
    recent_ids = db.session.scalars(
        select(TerminalSession.device_id).where(TerminalSession.user_id == current_user.id,
                                                TerminalSession.device_id.in_(by_id))
        .group_by(TerminalSession.device_id).order_by(last.desc()).limit(RECENT))
    groups = {}
    for device in devices:
        groups.setdefault(device.folder or None, []).append(device)  # a blank folder is no folder
    folders = sorted(groups, key=lambda name: (name is None, (name or "").casefold()))
    owners = dict(db.session.execute(select(User.id, User.username)
                                     .where(User.id.in_({d.owner_id for d in devices}))).all())
    return {"devices": devices, "groups": [(name, groups[name]) for name in folders],
            "favourites": [d for d in devices if d.id in favourite_ids], "favourite_ids": favourite_ids,
            "recent": [by_id[i] for i in recent_ids], "owners": owners, "twins": _twins(devices),
            "editable": {d.id for d in devices if may_edit(current_user, d)}}


def _twins(devices):
    """Return the names (lower case) that two or more of the listed devices share: those rows name their owner."""
    seen, twins = set(), set()
    for device in devices:
        name = device.name.lower()  # as the template compares it
        (twins if name in seen else seen).add(name)
    return twins
