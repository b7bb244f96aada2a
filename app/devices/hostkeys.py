"""Host keys: trust on first use, refuse a changed key, let an admin accept exactly the key offered (or forget)."""
from flask import has_request_context, url_for
from flask_login import current_user
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from app.access import may_manage_host_keys
from app.audit.events import FAILURE, record
from app.dbtypes import now_utc
from app.extensions import db

from .models import HostKey, OfferedHostKey
from .ssh import ConnectError, fingerprint


class HostKeyChanged(ConnectError):
    """A device offered another key than the stored one; extra carries what the browser needs to offer accepting."""

    def __init__(self, message, extra):
        super().__init__("host_key_mismatch", message)
        self.extra = extra


def checker(device, username):
    """Return the callback that connect() uses to accept or refuse the device's host key."""

    def check(key):
        offered = fingerprint(key)
        row = db.session.scalar(select(HostKey).filter_by(host=device.host, port=device.port))
        if row is None:
            # Audited first: if the trail cannot be written, the key is not trusted (AuditWriteError).
            record("hostkey.trusted", f"trusted host key of {device.address} on first use ({offered})",
                   target=device.label, details={"key_type": key.get_name(), "fingerprint": offered})
            db.session.add(HostKey(host=device.host, port=device.port, key_type=key.get_name(),
                                   key_base64=key.get_base64(), fingerprint=offered, trusted_by=username))
            try:
                db.session.commit()
            except IntegrityError:  # another session trusted it a moment ago: check against that one
                db.session.rollback()
                return check(key)
            return
        stored = (row.key_type, row.fingerprint)
        if (row.key_type, row.key_base64) == (key.get_name(), key.get_base64()):
            db.session.rollback()  # end the read: no connection held through the rest of the handshake
            return
        _refuse(device, key, stored, keep_offered(device.host, device.port, key, username))

    return check


def keep_offered(host, port, key, username):
    """Store the key a device offered (once per distinct key) and return its id, for accepting exactly it."""
    offered = fingerprint(key)
    where = {"host": host, "port": port, "fingerprint": offered}
    row = db.session.scalar(select(OfferedHostKey).filter_by(**where))
    if row is None:
        row = OfferedHostKey(key_type=key.get_name(), key_base64=key.get_base64(), offered_to=username, **where)
        db.session.add(row)
    else:  # offered again: the newest attempt is the one to look into
        row.offered_at, row.offered_to = now_utc(), username
    try:
        db.session.commit()
    except IntegrityError:  # another terminal kept the same key a moment ago
        db.session.rollback()
        row = db.session.scalar(select(OfferedHostKey).filter_by(**where))
    offered_id = row.id
    db.session.rollback()  # end the read: no connection held through the rest of the handshake
    return offered_id


def _refuse(device, key, stored, offered_id):
    """Record the mismatch (with a way to accept the offered key) and refuse the connection."""
    stored_type, stored_fingerprint = stored
    offered = fingerprint(key)
    record("hostkey.mismatch", f"host key of {device.address} changed: refused connection", outcome=FAILURE,
           target=device.label, details={"stored": stored_fingerprint, "stored_type": stored_type,
                                         "offered": offered, "offered_type": key.get_name(),
                                         "offered_id": offered_id})
    may_accept = has_request_context() and current_user.is_authenticated and may_manage_host_keys(current_user)
    extra = {"accept_url": url_for("terminals.offered_host_key", offered_id=offered_id)} if may_accept else {}
    raise HostKeyChanged(
        f"WARNING: the host key of {device.address} has changed!\r\n"
        f"  stored:  {stored_type} {stored_fingerprint}\r\n  offered: {key.get_name()} {offered}\r\n"
        "Someone could be intercepting the connection, or the host was reinstalled. Connection refused. "
        + ("If the change is expected, check the offered fingerprint on the device, then accept it "
           "(Accept this new key…, below)." if may_accept else
           "If the change is expected, ask an administrator to accept the new key."), extra)


def accept(offered_row, actor):
    """Trust exactly the offered key for its host:port in place of the stored one; record hostkey.replaced."""
    label = f"{offered_row.host}:{offered_row.port}"
    row = db.session.scalar(select(HostKey).filter_by(host=offered_row.host, port=offered_row.port))
    before = {"stored": row.fingerprint, "stored_type": row.key_type} if row else {"stored": None}
    details = {**before, "accepted": offered_row.fingerprint, "accepted_type": offered_row.key_type}
    if row is None:
        row = HostKey(host=offered_row.host, port=offered_row.port)
        db.session.add(row)
    row.key_type, row.key_base64 = offered_row.key_type, offered_row.key_base64
    row.fingerprint = offered_row.fingerprint
    row.trusted_at, row.trusted_by = now_utc(), actor
    db.session.delete(offered_row)
    db.session.commit()
    record("hostkey.replaced", f"replaced host key of {label}: {details['stored'] or 'none stored'} "
                               f"by {offered_row.fingerprint}", target=label, details=details)


def pending(host=None, port=None):
    """Return the offered keys not accepted yet (those of one host:port when given), newest first."""
    query = select(OfferedHostKey).order_by(OfferedHostKey.offered_at.desc())
    if host is not None:
        query = query.filter_by(host=host, port=port)
    return db.session.scalars(query).all()


def forget(host_key):
    """Delete a stored host key, so the next connection trusts whatever key it is offered."""
    label = f"{host_key.host}:{host_key.port}"
    details = {"key_type": host_key.key_type, "fingerprint": host_key.fingerprint}
    db.session.delete(host_key)
    # Keys offered against the forgotten one have nothing left to replace.
    db.session.execute(delete(OfferedHostKey).filter_by(host=host_key.host, port=host_key.port))
    db.session.commit()
    record("hostkey.forgotten", f"forgot host key of {label} ({host_key.fingerprint})", target=label, details=details)
