"""The device form's connection test against the real sshd: each step, the one that failed, never a secret; stored
credentials only ever to the device's stored address (a fake SSH server records what it is offered)."""
import re
import socket
import threading

import paramiko
import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.auth.models import User
from app.devices import connection_test
from app.devices.models import Device, HostKey
from app.extensions import db
from tests.support import free_port, wait_for
from tests.test_teams import client_of, make_user, post, team_id


def try_form(admin, sshd, path="/devices/test", **fields):
    """POST the device form to a connection-test route; return the response."""
    token = re.search(r'name="csrf-token" content="([^"]+)"', admin.get("/").get_data(as_text=True)).group(1)
    data = {"name": "lab", "host": sshd.host, "port": sshd.port, "username": sshd.user, "auth_type": "password",
            "password": sshd.password, "csrf_token": token, **fields}
    return admin.post(path, data=data)




def steps(response):
    """Return {step: passed/failed/skipped} from the partial."""
    found = re.findall(r'<li class="(\w+)" data-step="([^"]+)"', response.get_data(as_text=True))
    return {name: state for state, name in found}


def recorded(app):
    """Return the device.tested events, oldest first."""
    with app.app_context():
        return db.session.scalars(select(AuditEvent).filter_by(action="device.tested").order_by(AuditEvent.id)).all()


def test_all_steps_pass_and_a_new_key_is_reported_not_trusted(app, admin, sshd):
    response = try_form(admin, sshd)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "All steps passed." in body
    assert steps(response) == {"reach": "passed", "host key": "passed", "authentication": "passed", "shell": "passed"}
    assert f"new key ssh-ed25519 {sshd.fingerprint()}" in body
    assert sshd.password not in body
    with app.app_context():
        assert db.session.scalar(select(HostKey)) is None  # never trusted by a test
    [event] = recorded(app)
    assert event.outcome == "success" and event.severity == "notice" and event.target == f"lab (127.0.0.1:{sshd.port})"
    assert event.details == {"device": None, "address": f"127.0.0.1:{sshd.port}", "stored_credentials": False,
                             "failed_step": None, "passed": ["reach", "host key", "authentication", "shell"]}


def test_wrong_password_names_the_authentication_step(app, admin, sshd):
    response = try_form(admin, sshd, password="not-the-password-1")
    body = response.get_data(as_text=True)
    assert "The authentication step failed." in body and "not-the-password-1" not in body
    assert steps(response) == {"reach": "passed", "host key": "passed", "authentication": "failed", "shell": "skipped"}
    [event] = recorded(app)
    assert event.outcome == "failure" and event.severity == "warning" and event.details["failed_step"] == "authentication"
    assert "not-the-password-1" not in str(event.details) + event.message


def test_closed_port_names_the_reach_step(app, admin, sshd):
    response = try_form(admin, sshd, port=free_port())
    assert "The reach step failed." in response.get_data(as_text=True) and "refused" in response.get_data(as_text=True)
    assert steps(response) == {"reach": "failed", "host key": "skipped", "authentication": "skipped", "shell": "skipped"}


def test_changed_host_key_names_the_host_key_step_before_any_credential(app, admin, sshd):
    with app.app_context():
        db.session.add(HostKey(host=sshd.host, port=sshd.port, key_type="ssh-ed25519",
                               key_base64="AAAAC3NzaC1lZDI1NTE5AAAAIOtherKeyOtherKeyOtherKeyOtherKeyOtherKey0",
                               fingerprint="SHA256:stored-one", trusted_by="admin"))
        db.session.commit()
    response = try_form(admin, sshd)
    body = response.get_data(as_text=True)
    assert "The host key step failed." in body and "SHA256:stored-one" in body and sshd.fingerprint() in body
    assert steps(response) == {"reach": "passed", "host key": "failed", "authentication": "skipped", "shell": "skipped"}


def test_edit_with_blank_secret_uses_the_stored_credentials(app, admin, sshd):
    token = re.search(r'name="csrf-token" content="([^"]+)"', admin.get("/").get_data(as_text=True)).group(1)
    admin.post("/devices/", data={"name": "lab", "host": sshd.host, "port": sshd.port, "username": sshd.user,
                                  "auth_type": "password", "password": sshd.password, "csrf_token": token})
    with app.app_context():
        device_id = db.session.scalar(select(Device.id))
    response = try_form(admin, sshd, path=f"/devices/{device_id}/test", password="")
    assert "All steps passed." in response.get_data(as_text=True)
    assert try_form(admin, sshd, password="").status_code == 422  # a new device has nothing stored


def test_pasted_key(admin, sshd):
    response = try_form(admin, sshd, auth_type="key", password="", private_key=sshd.key_text)
    assert "All steps passed." in response.get_data(as_text=True)
    assert "PRIVATE KEY" not in response.get_data(as_text=True)


def test_one_test_at_a_time_per_user(app, admin, sshd, monkeypatch):
    from app.auth.models import User

    with app.app_context():
        admin_id = db.session.scalar(select(User.id).filter_by(username="admin"))
    monkeypatch.setattr(connection_test, "_testing", {admin_id})
    response = try_form(admin, sshd)
    assert response.status_code == 429 and "already running" in response.get_data(as_text=True)
    assert recorded(app) == []


def test_other_users_device_is_not_found(admin, sshd):
    assert try_form(admin, sshd, path="/devices/999/test").status_code == 404


class RecordingServer(paramiko.ServerInterface):
    """An SSH server's side of authentication that refuses everyone and writes down what it was offered."""

    def __init__(self, offered):
        self.offered = offered

    def get_allowed_auths(self, username):
        return "password,publickey"

    def check_auth_password(self, username, password):
        self.offered.append(("password", password))
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username, key):
        self.offered.append(("publickey", key.get_base64()))
        return paramiko.AUTH_FAILED


@pytest.fixture
def fake_sshd():
    """A fake SSH server on 127.0.0.1 that records the passwords and keys it is offered: (port, offered list)."""
    offered, listener = [], socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    key = paramiko.RSAKey.generate(2048)
    transports = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(conn)
            transport.add_server_key(key)
            transports.append(transport)
            try:
                transport.start_server(server=RecordingServer(offered))
            except (paramiko.SSHException, EOFError, OSError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1], offered
    listener.close()
    for transport in transports:
        transport.close()


def test_stored_credentials_go_only_to_the_stored_address(app, sshd, fake_sshd):
    fake_port, offered = fake_sshd
    make_user(app, "bob")
    bob = client_of(app, "bob")
    form = {"name": "web1", "host": sshd.host, "port": sshd.port, "username": sshd.user, "auth_type": "password",
            "password": sshd.password, "folder": "core"}
    assert "Device web1 added." in post(bob, "/devices/", form).get_data(as_text=True)
    with app.app_context():
        device_id = db.session.scalar(select(Device.id))
        bob_id, admin_id = (db.session.scalar(select(User.id).filter_by(username=name)) for name in ("bob", "admin"))
    admin = client_of(app)  # an admin who joins a team holding a grant on bob's device
    post(admin, "/teams/", {"name": "ops"})
    tid = team_id(app, "ops")
    post(admin, f"/teams/{tid}/members", {f"team{tid}-user_id": admin_id})
    post(admin, f"/teams/{tid}/grants", {f"team{tid}-grant-kind": "folder", f"team{tid}-grant-value": "core",
                                         f"team{tid}-grant-owners": [bob_id]})

    elsewhere = {**form, "host": "127.0.0.1", "port": fake_port, "password": ""}
    response = post(admin, f"/devices/{device_id}/test", elsewhere)
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert (f"The stored credentials go only to the device&#39;s saved address 127.0.0.1:{sshd.port}. "
            f"To test 127.0.0.1:{fake_port}, type the password again.") in body
    response = post(admin, f"/devices/{device_id}/test", {**elsewhere, "port": sshd.port, "host": "localhost"})
    assert response.status_code == 422 and "type the password again" in response.get_data(as_text=True)
    # Typed again, a password goes where the form says: the fake server hears it (and nothing stored).
    typed = post(admin, f"/devices/{device_id}/test", {**elsewhere, "password": "typed-on-purpose-1"})
    assert "The authentication step failed." in typed.get_data(as_text=True)
    wait_for(lambda: offered)
    assert offered == [("password", "typed-on-purpose-1")]
    # The same form at the stored address works with the stored password, through the real sshd.
    response = post(admin, f"/devices/{device_id}/test", {**form, "password": ""})
    assert "All steps passed." in response.get_data(as_text=True)
    assert all(sshd.password not in value for _, value in offered)

    refused, refused_by_name, tried, passed = recorded(app)
    assert refused.outcome == "failure" and refused.target == f"web1 (127.0.0.1:{sshd.port})"
    assert refused.message == (f"tested connection to web1 (127.0.0.1:{sshd.port}) at 127.0.0.1:{fake_port}: "
                               "refused failed")
    assert refused.details == {"device": f"web1 (127.0.0.1:{sshd.port})", "device_id": device_id, "owner_id": bob_id,
                               "address": f"127.0.0.1:{fake_port}", "stored_credentials": False,
                               "failed_step": "refused", "refused": "address_changed", "passed": []}
    assert refused_by_name.details["address"] == f"localhost:{sshd.port}"  # another name is another address
    assert tried.details["stored_credentials"] is False and tried.details["failed_step"] == "authentication"
    assert passed.details["stored_credentials"] is True and passed.details["address"] == f"127.0.0.1:{sshd.port}"
    assert passed.actor == "admin"
    trail = bob.get("/audit/rows").get_data(as_text=True)  # the owner reads what was tried with their device
    assert trail.count("tested connection to web1") == 4 and f"127.0.0.1:{fake_port}" in trail


def test_a_stored_key_goes_nowhere_else_either(app, admin, sshd, fake_sshd):
    fake_port, offered = fake_sshd
    token = re.search(r'name="csrf-token" content="([^"]+)"', admin.get("/").get_data(as_text=True)).group(1)
    admin.post("/devices/", data={"name": "lab", "host": sshd.host, "port": sshd.port, "username": sshd.user,
                                  "auth_type": "key", "private_key": sshd.key_text, "csrf_token": token})
    with app.app_context():
        device_id = db.session.scalar(select(Device.id))
    response = try_form(admin, sshd, path=f"/devices/{device_id}/test", auth_type="key", password="",
                        port=fake_port)
    assert response.status_code == 422 and "type the private key again" in response.get_data(as_text=True)
    assert offered == []
    response = try_form(admin, sshd, path=f"/devices/{device_id}/test", auth_type="key", password="")
    assert "All steps passed." in response.get_data(as_text=True)


def test_an_admin_moves_anothers_device_only_with_its_credentials_typed_again(app, sshd, fake_sshd):
    fake_port, offered = fake_sshd
    make_user(app, "bob")
    bob = client_of(app, "bob")
    form = {"name": "web1", "host": sshd.host, "port": sshd.port, "username": sshd.user, "auth_type": "password",
            "password": sshd.password, "folder": "core"}
    post(bob, "/devices/", form)
    with app.app_context():
        device_id = db.session.scalar(select(Device.id))
        bob_id, admin_id = (db.session.scalar(select(User.id).filter_by(username=name)) for name in ("bob", "admin"))
    admin = client_of(app)
    post(admin, "/teams/", {"name": "ops"})
    tid = team_id(app, "ops")
    post(admin, f"/teams/{tid}/members", {f"team{tid}-user_id": admin_id})
    post(admin, f"/teams/{tid}/grants", {f"team{tid}-grant-kind": "folder", f"team{tid}-grant-value": "core",
                                         f"team{tid}-grant-owners": [bob_id]})
    moved = {**form, "port": fake_port, "password": ""}
    response = post(admin, f"/devices/{device_id}", moved)
    assert response.status_code == 422 and "To move it, type its password or key again." in response.get_data(
        as_text=True)
    with app.app_context():
        assert db.session.get(Device, device_id).port == sshd.port  # nothing saved
    assert "Device web1 saved." in post(admin, f"/devices/{device_id}", {**moved, "password": "new-one-1"}).get_data(
        as_text=True)
    assert "Device web1 saved." in post(bob, f"/devices/{device_id}", {**form, "password": ""}).get_data(
        as_text=True)  # the owner moves their own with the stored password kept
    assert offered == []
