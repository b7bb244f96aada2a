"""The device form's connection test against the real sshd: each step, the one that failed, never a secret."""
import re

import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.devices import views
from app.devices.models import Device
from app.extensions import db
from app.terminals.models import HostKey
from tests.support import free_port


@pytest.fixture
def admin(client, auth):
    auth.login()
    return client


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
    assert event.details == {"failed_step": None, "passed": ["reach", "host key", "authentication", "shell"]}


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
    monkeypatch.setattr(views, "_testing", {admin_id})
    response = try_form(admin, sshd)
    assert response.status_code == 429 and "already running" in response.get_data(as_text=True)
    assert recorded(app) == []


def test_other_users_device_is_not_found(admin, sshd):
    assert try_form(admin, sshd, path="/devices/999/test").status_code == 404
