"""Host keys: trust on first use, refuse a changed key, let an admin forget one."""
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.audit.events import FAILURE, record
from app.extensions import db

from .bridge import ConnectError, fingerprint
from .models import HostKey


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
        stored_type, stored_key, stored_fingerprint = row.key_type, row.key_base64, row.fingerprint
        db.session.rollback()  # end the read: no connection held through the rest of the handshake
        if stored_type == key.get_name() and stored_key == key.get_base64():
            return
        record("hostkey.mismatch", f"host key of {device.address} changed: refused connection", outcome=FAILURE,
               target=device.label, details={"stored": stored_fingerprint, "stored_type": stored_type,
                                             "offered": offered, "offered_type": key.get_name()})
        raise ConnectError(
            "host_key_mismatch",
            f"WARNING: the host key of {device.address} has changed!\r\n"
            f"  stored:  {stored_type} {stored_fingerprint}\r\n  offered: {key.get_name()} {offered}\r\n"
            "Someone could be intercepting the connection, or the host was reinstalled. "
            "Connection refused; an administrator can forget the stored key if the change is expected.",
        )

    return check


def forget(host_key):
    """Delete a stored host key, so the next connection trusts whatever key it is offered."""
    label = f"{host_key.host}:{host_key.port}"
    details = {"key_type": host_key.key_type, "fingerprint": host_key.fingerprint}
    db.session.delete(host_key)
    db.session.commit()
    record("hostkey.forgotten", f"forgot host key of {label} ({host_key.fingerprint})", target=label, details=details)
