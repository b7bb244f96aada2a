"""Whose devices a grant covers: the owners an admin chose, suggested from the devices a folder or tag holds now.

A folder or tag is a name any owner may put on their own devices, so a grant names the owners it trusts
(table grant_owners); devices of admins are covered as well. The rule itself is app.access.covers.
"""
from sqlalchemy import delete, func, select

from app.access import covered_by
from app.auth.models import User
from app.devices.models import Device, DeviceTag
from app.extensions import db

from .models import GRANT_FOLDER, GRANT_TAG, GrantOwner


def owner_counts(kind, value):
    """Return {owner id: how many of their devices are in folder value / carry tag value} (any owner, chosen or not)."""
    if not value:
        return {}
    if kind == GRANT_TAG:
        query = (select(Device.owner_id, func.count()).join(DeviceTag, DeviceTag.device_id == Device.id)
                 .where(DeviceTag.tag == value.lower()))
    elif kind == GRANT_FOLDER:
        query = select(Device.owner_id, func.count()).where(Device.folder == value)
    else:
        return {}
    return dict(db.session.execute(query.group_by(Device.owner_id)).all())


def owner_rows(users, counts, ticked):
    """Return the owner choices to show: each user with their device count there, ticked or not; owners first."""
    rows = [{"id": user.id, "name": user.username, "admin": user.is_admin, "disabled": user.disabled,
             "count": counts.get(user.id, 0), "ticked": user.id in ticked} for user in users]
    return sorted(rows, key=lambda row: (not row["ticked"], not row["count"], row["name"].casefold()))


def owners_of(grant_ids):
    """Return {grant id: [owner names, sorted]} of the given grants."""
    owners = {grant_id: [] for grant_id in grant_ids}
    query = (select(GrantOwner.grant_id, User.username).join(User, User.id == GrantOwner.user_id)
             .where(GrantOwner.grant_id.in_(owners)).order_by(User.username))
    for grant_id, name in db.session.execute(query):
        owners[grant_id].append(name)
    return owners


def owner_ids(grant_id):
    """Return the ids of a grant's owners."""
    return set(db.session.scalars(select(GrantOwner.user_id).where(GrantOwner.grant_id == grant_id)))


def set_owners(grant_id, user_ids):
    """Make user_ids the owners of a grant (not committed); return (added names, removed names)."""
    before = owner_ids(grant_id)
    wanted = set(user_ids or ())
    if before - wanted:
        db.session.execute(delete(GrantOwner).where(GrantOwner.grant_id == grant_id,
                                                    GrantOwner.user_id.in_(before - wanted)))
    db.session.add_all(GrantOwner(grant_id=grant_id, user_id=user_id) for user_id in wanted - before)
    names = dict(db.session.execute(select(User.id, User.username).where(User.id.in_(before | wanted))).all())
    return sorted(names[i] for i in wanted - before), sorted(names[i] for i in before - wanted)


def device_count(grant_id):
    """Return how many devices a grant covers now."""
    return db.session.scalar(select(func.count()).select_from(covered_by(grant_id).subquery()))
