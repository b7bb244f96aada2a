"""Devices: CRUD with each credential type, validation, ownership, secrets at rest."""
import io
import re
import subprocess
from pathlib import Path

import paramiko
import pytest
from sqlalchemy import func, select

from app import crypto
from app.devices import keys
from app.devices.models import Device
from app.extensions import db
from tests.support import AuthActions, logged_in_user, make_app, need_ssh_keygen

SECRET_PASSWORD = "device-secret-Pa55word!"
PASSPHRASE = "key-passphrase-42"


@pytest.fixture(scope="module")
def key_files(tmp_path_factory):
    """An OpenSSH ed25519 key, a PEM RSA key with a passphrase, and a damaged key."""
    need_ssh_keygen()
    folder = tmp_path_factory.mktemp("keys")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", folder / "plain"], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", PASSPHRASE,
                    "-f", folder / "locked"], check=True)
    return {"plain": (folder / "plain").read_text(), "locked": (folder / "locked").read_text(),
            "plain_pub": (folder / "plain.pub").read_text().split()[1]}


responses = []  # every body fetched in this module, checked for secrets at the end of each test


def post(client, path, data, **kwargs):
    token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)
    response = client.post(path, data={**data, "csrf_token": token}, **kwargs)
    responses.append(response.get_data())
    return response


def form(name="web1", **fields):
    return {"name": name, "host": "10.0.0.5", "port": "22", "username": "ops", "auth_type": "password",
            "password": SECRET_PASSWORD, **fields}


def device(app, name="web1"):
    with app.app_context():
        found = db.session.scalar(select(Device).filter_by(name=name))
        if found:
            db.session.expunge(found)
        return found


def decrypted(app, value, purpose):
    with app.app_context():
        return crypto.decrypt(value, purpose)


@pytest.fixture(autouse=True)
def no_secret_in_responses(key_files):
    responses.clear()
    yield
    private_body = key_files["plain"].split("\n")[1]  # a line of the private key's base64
    for body in responses:
        assert SECRET_PASSWORD.encode() not in body and PASSPHRASE.encode() not in body
        assert private_body.encode() not in body and b"PRIVATE KEY" not in body.replace(b"PRIVATE KEY-----\"", b"")


def test_create_with_password(app, admin):
    response = post(admin, "/devices/", form())
    assert response.status_code == 200
    assert b"Device web1 added." in response.data and b'data-device-name="web1"' in response.data
    stored = device(app)
    assert (stored.host, stored.port, stored.username, stored.auth_type) == ("10.0.0.5", 22, "ops", "password")
    assert decrypted(app, stored.password_enc, "password") == SECRET_PASSWORD
    assert SECRET_PASSWORD.encode() not in stored.password_enc


def test_create_with_pasted_key(app, admin, key_files):
    response = post(admin, "/devices/", form(auth_type="key", password="", private_key=key_files["plain"]))
    assert response.status_code == 200
    stored = device(app)
    assert stored.auth_type == "key" and stored.password_enc is None
    assert stored.public_key.split()[1] == key_files["plain_pub"]
    assert decrypted(app, stored.private_key_enc, "private_key").strip() == key_files["plain"].strip()


def test_create_with_uploaded_key_file_and_passphrase(app, admin, key_files):
    upload = (io.BytesIO(key_files["locked"].encode()), "id_rsa")
    response = post(admin, "/devices/", form(auth_type="key", password="", key_file=upload, passphrase=PASSPHRASE),
                    content_type="multipart/form-data")
    assert response.status_code == 200
    stored = device(app)
    assert stored.key_type == "ssh-rsa"
    assert decrypted(app, stored.passphrase_enc, "passphrase") == PASSPHRASE
    assert keys.load_private_key(decrypted(app, stored.private_key_enc, "private_key"), PASSPHRASE)


@pytest.mark.parametrize("passphrase,message", [
    ("", b"This key is encrypted: enter its passphrase."),
    ("not-the-passphrase", b"Wrong passphrase for this key."),
])
def test_locked_key_needs_the_right_passphrase(app, admin, key_files, passphrase, message):
    response = post(admin, "/devices/", form(auth_type="key", password="", private_key=key_files["locked"],
                                             passphrase=passphrase))
    assert response.status_code == 422 and message in response.data
    assert device(app) is None


@pytest.mark.parametrize("kind,prefix", [("ed25519", "ssh-ed25519"), ("rsa4096", "ssh-rsa")])
def test_generated_key_pair(app, admin, kind, prefix):
    response = post(admin, "/devices/", form(auth_type="generate", password="", key_type=kind))
    assert response.status_code == 200
    stored = device(app)
    shown = re.search(rb'<textarea readonly rows="3"[^>]*>([^<]+)</textarea>', response.data).group(1).decode()
    assert shown == stored.public_key and shown.startswith(prefix)
    private = keys.load_private_key(decrypted(app, stored.private_key_enc, "private_key"))
    assert private.get_base64() == shown.split()[1]  # the stored private key matches the public one shown
    if kind == "rsa4096":
        assert private.get_bits() == 4096
    assert b"PRIVATE KEY" not in response.data


def test_edit_keeps_blank_secrets_and_replaces_filled_ones(app, admin, key_files):
    post(admin, "/devices/", form())
    stored = device(app)
    edit = admin.get(f"/devices/{stored.id}/edit")
    assert edit.status_code == 200 and b'value="web1"' in edit.data
    responses.append(edit.data)
    post(admin, f"/devices/{stored.id}", form(host="10.0.0.6", password=""))
    kept = device(app)
    assert kept.host == "10.0.0.6" and kept.password_enc == stored.password_enc
    post(admin, f"/devices/{stored.id}", form(password="another-secret-9"))
    assert decrypted(app, device(app).password_enc, "password") == "another-secret-9"
    post(admin, f"/devices/{stored.id}", form(auth_type="key", password="", private_key=key_files["plain"]))
    switched = device(app)
    assert switched.auth_type == "key" and switched.password_enc is None and switched.private_key_enc
    post(admin, f"/devices/{stored.id}", form(auth_type="key", password=""))  # key kept when left blank
    assert device(app).private_key_enc == switched.private_key_enc
    response = post(admin, f"/devices/{stored.id}", form(auth_type="password", password=""))
    assert response.status_code == 422 and b"Enter the SSH password." in response.data


def test_each_save_names_what_changed_never_the_values(app, admin, key_files):
    from app.audit.models import AuditEvent

    post(admin, "/devices/", form())
    device_id = device(app).id
    post(admin, f"/devices/{device_id}", form(password=""))  # nothing changed
    post(admin, f"/devices/{device_id}", form(auth_type="generate", password=""))
    post(admin, f"/devices/{device_id}", form(auth_type="key", password=""))  # the stored key kept
    post(admin, f"/devices/{device_id}", form(auth_type="key", password="", private_key=key_files["plain"]))
    post(admin, f"/devices/{device_id}", form(name="web2"))
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.action.like("device.%"))
                                    .order_by(AuditEvent.id)).all()
    assert [(e.action, e.details) for e in events] == [
        ("device.created", {"auth_type": "password",
                            "fields": ["name", "host", "port", "username", "auth_type", "credential"]}),
        ("device.updated", {"auth_type": "password", "fields": []}),
        ("device.updated", {"auth_type": "key", "fields": ["auth_type", "credential"], "key": "ssh-ed25519"}),
        ("device.updated", {"auth_type": "key", "fields": []}),
        ("device.updated", {"auth_type": "key", "fields": ["credential"], "key": "ssh-ed25519"}),
        ("device.updated", {"auth_type": "password", "fields": ["name", "auth_type", "credential"]}),
    ]
    assert events[-1].target == "web2 (10.0.0.5:22)"


def test_delete(app, admin):
    post(admin, "/devices/", form())
    response = post(admin, f"/devices/{device(app).id}/delete", {})
    assert response.status_code == 200 and b"deleted" in response.data and device(app) is None


@pytest.mark.parametrize("fields,message", [
    ({"name": ""}, b"Give the device a name."),
    ({"name": "x" * 65}, b"Field cannot be longer than 64 characters."),
    ({"port": "0"}, b"Port must be between 1 and 65535."),
    ({"port": "70000"}, b"Port must be between 1 and 65535."),
    ({"port": "abc"}, b"Not a valid integer value."),
    ({"host": ""}, b"Enter a host name or address."),
    ({"host": "bad host"}, b"Enter a host name or an IPv4/IPv6 address."),
    ({"host": "-x"}, b"Enter a host name or an IPv4/IPv6 address."),
    ({"host": "a..b"}, b"Enter a host name or an IPv4/IPv6 address."),
    ({"host": "http://x"}, b"Enter a host name or an IPv4/IPv6 address."),
    ({"host": "300.1.1.1"}, b"Enter a host name or an IPv4/IPv6 address."),
    ({"username": "root@x"}, b"The SSH user may not contain"),
    ({"password": ""}, b"Enter the SSH password."),
    ({"auth_type": "key", "private_key": "hello"}, b"That is not a private key"),
    ({"auth_type": "key", "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----"},
     b"could not be read"),
    ({"auth_type": "key"}, b"Paste or upload a private key."),
    ({"auth_type": "telnet"}, b"Not a valid choice."),
])
def test_bad_input_is_refused_and_nothing_saved(app, admin, fields, message):
    response = post(admin, "/devices/", form(**fields))
    assert response.status_code == 422
    assert message in response.data
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Device)) == 0


def test_duplicate_name_refused(app, admin):
    post(admin, "/devices/", form())
    response = post(admin, "/devices/", form(host="10.0.0.9"))
    assert response.status_code == 422 and b"You already have a device with this name." in response.data


@pytest.mark.parametrize("host,stored", [("[2001:DB8::1]", "2001:db8::1"), ("Server.Example.ORG.", "server.example.org")])
def test_host_is_normalised(app, admin, host, stored):
    post(admin, "/devices/", form(host=host))
    assert device(app).host == stored


def test_other_users_devices_are_not_found(app, admin):
    post(admin, "/devices/", form())
    device_id = device(app).id
    other = logged_in_user(app, "bob")
    assert other.get(f"/devices/{device_id}/edit").status_code == 404
    assert post(other, f"/devices/{device_id}", form(host="10.6.6.6")).status_code == 404
    assert post(other, f"/devices/{device_id}/delete", {}).status_code == 404
    assert b"web1" not in other.get("/devices/").data
    assert device(app).host == "10.0.0.5"


def test_no_secret_in_clear_in_the_database_file(app, admin, key_files):
    post(admin, "/devices/", form())
    post(admin, "/devices/", form(name="web2", auth_type="key", password="", private_key=key_files["locked"],
                                  passphrase=PASSPHRASE))
    with app.app_context():
        db.session.execute(db.text("PRAGMA wal_checkpoint(FULL)"))
        path = Path(db.engine.url.database)
    raw = path.read_bytes() + (path.with_name(path.name + "-wal").read_bytes()
                               if path.with_name(path.name + "-wal").exists() else b"")
    assert SECRET_PASSWORD.encode() not in raw and PASSPHRASE.encode() not in raw
    assert key_files["locked"].split("\n")[5].encode() not in raw and b"PRIVATE KEY" not in raw


def test_no_secret_in_clear_on_postgresql(pg_app, key_files):
    client = pg_app.test_client()
    AuthActions(client).login()
    post(client, "/devices/", form(auth_type="key", password="", private_key=key_files["locked"], passphrase=PASSPHRASE))
    with pg_app.app_context():
        columns = db.session.execute(db.text(
            "SELECT password_enc, private_key_enc, passphrase_enc, public_key FROM devices")).one()
    raw = b"".join(bytes(c) if isinstance(c, (bytes, memoryview)) else (c or "").encode() for c in columns)
    assert PASSPHRASE.encode() not in raw and b"PRIVATE KEY" not in raw and len(raw) > 1000


def test_changing_the_secret_key_needs_encryption_key(tmp_path):
    first = make_app(tmp_path / "a", SECRET_KEY="s" * 40)
    with first.app_context():
        blob = crypto.encrypt("hunter2-device", "password")
    second = make_app(tmp_path / "b", SECRET_KEY="t" * 40)
    with second.app_context(), pytest.raises(crypto.SecretError, match="was SECRET_KEY or ENCRYPTION_KEY changed"):
        crypto.decrypt(blob, "password")
    pinned = make_app(tmp_path / "c", SECRET_KEY="s" * 40, ENCRYPTION_KEY="e" * 40)
    with pinned.app_context():
        blob = crypto.encrypt("hunter2-device", "password")
        with pytest.raises(crypto.SecretError):
            crypto.decrypt(blob, "private_key")  # bound to its purpose
    rotated = make_app(tmp_path / "d", SECRET_KEY="u" * 40, ENCRYPTION_KEY="e" * 40)
    with rotated.app_context():
        assert crypto.decrypt(blob, "password") == "hunter2-device"


def test_key_parser_rejects_paramiko_garbage():
    with pytest.raises(keys.KeyProblem):
        keys.load_private_key("")
    generated, public = keys.generate("ed25519")
    assert isinstance(keys.load_private_key(generated), paramiko.Ed25519Key) and public.startswith("ssh-ed25519 ")
