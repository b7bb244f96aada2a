"""Offered host keys in the database (SQLite and PostgreSQL): kept once per key at a mismatch, accepted exactly,
dropped with a forgotten key."""
from types import SimpleNamespace

import paramiko
import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.devices import hostkeys
from app.devices.models import HostKey, OfferedHostKey
from app.devices.ssh import fingerprint
from app.extensions import db

DEVICE = SimpleNamespace(host="127.0.0.1", port=2222, address="127.0.0.1:2222", label="box (127.0.0.1:2222)")


def offer(key):
    """Offer key to the checker; return the mismatch's details, or None when it was trusted."""
    try:
        hostkeys.checker(DEVICE, "admin")(key)
    except hostkeys.HostKeyChanged as changed:
        assert changed.reason == "host_key_mismatch" and changed.extra == {}  # no request: nobody to link
        return db.session.scalars(select(AuditEvent).filter_by(action="hostkey.mismatch")
                                  .order_by(AuditEvent.id.desc())).first().details
    return None


def test_kept_once_accepted_exactly_forgotten_with_its_key(any_app):
    first, second, third = (paramiko.ECDSAKey.generate() for _ in range(3))
    with any_app.app_context():
        assert offer(first) is None  # trusted on first use
        seen = offer(second)
        again = offer(second)  # the same key offered twice is one row, not two
        assert seen["offered_id"] == again["offered_id"] and seen["offered"] == fingerprint(second)
        offer(third)
        assert len(hostkeys.pending("127.0.0.1", 2222)) == 2
        hostkeys.accept(db.session.get(OfferedHostKey, seen["offered_id"]), "admin")
        stored = db.session.scalar(select(HostKey).filter_by(host="127.0.0.1", port=2222))
        assert (stored.key_base64, stored.fingerprint, stored.trusted_by) == (second.get_base64(), fingerprint(second),
                                                                              "admin")
        replaced = db.session.scalars(select(AuditEvent).filter_by(action="hostkey.replaced")).one()
        assert replaced.details == {"stored": fingerprint(first), "stored_type": first.get_name(),
                                    "accepted": fingerprint(second), "accepted_type": second.get_name()}
        assert offer(second) is None  # accepted: it connects
        assert offer(third)["stored"] == fingerprint(second)  # the third still mismatches
        assert offer(first) is not None  # and so does the old one
        hostkeys.forget(stored)
        assert hostkeys.pending("127.0.0.1", 2222) == []  # nothing left to replace
        assert offer(third) is None  # the next connection trusts what it is offered, as Forget says


@pytest.mark.parametrize("gone", ["accepted", "forgotten"])
def test_an_offered_key_that_is_gone_is_a_clear_404(any_app, gone):
    from tests.support import AuthActions

    key, other = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
    with any_app.app_context():
        offer(key)
        offered_id = offer(other)["offered_id"]
        if gone == "accepted":
            hostkeys.accept(db.session.get(OfferedHostKey, offered_id), "admin")
        else:
            hostkeys.forget(db.session.scalar(select(HostKey).filter_by(host="127.0.0.1", port=2222)))
    client = any_app.test_client()
    AuthActions(client).login()
    page = client.get(f"/terminals/hostkeys/offered/{offered_id}")
    assert page.status_code == 404 and "accepted or forgotten already" in page.get_data(as_text=True)
