"""The file manager over SFTP, end to end: gunicorn (gevent), a terminal's websocket, its SSH connection to a real
OpenSSH sshd, and the file routes on that same connection (app/terminals/files.py, sftp.py)."""
import hashlib
import http.client
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import socket
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from tests.support import (WAIT_SECONDS, SSHServer, connect_terminal, csrf_from, live_events, new_user, read_until,
                           session_of, wait_for)

LIMIT_MB = 25


@pytest.fixture(scope="module")
def sftp_sshd(tmp_path_factory):
    """A real sshd like the suite's, with its sftp subsystem (the suite's sshd config names none)."""
    server = SSHServer(tmp_path_factory.mktemp("sshd-sftp"), extra={"Subsystem": "sftp internal-sftp"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(module_live_servers):
    """One gunicorn server for the module, with a small upload limit."""
    return module_live_servers(SFTP_MAX_UPLOAD_MB=str(LIMIT_MB))


@pytest.fixture
def workdir(sftp_sshd):
    """A fresh folder in the test user's home, owned by them; removed afterwards."""
    entry = pwd.getpwnam(sftp_sshd.user)
    folder = Path(entry.pw_dir) / f"files-{secrets.token_hex(4)}"
    folder.mkdir()
    os.chown(folder, entry.pw_uid, entry.pw_gid)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(folder, ignore_errors=True)


class Terminal:
    """A logged-in user's open terminal to the sftp sshd, and the file routes of its session."""

    def __init__(self, server, sshd, username="admin", password=None, **device_fields):
        self.server = server
        self.http = server.login(username, password) if password else server.login()
        self.token = server.csrf(self.http)
        self.device_id = server.add_device(self.http, sshd, "files-" + secrets.token_hex(3), **device_fields)
        self.ws = connect_terminal(f"{server.ws_url}/terminals/{self.device_id}/ws", self.http, server.url)
        self.session = session_of(self.ws)
        self.ws.send(b"echo ready-$((6*7))\n")
        read_until(self.ws, b"ready-42")
        self.base = f"{server.url}/terminals/sessions/{self.session}/files"

    def get(self, path="", http=None, **params):
        return (http or self.http).get(self.base, params={"path": path, **params}, timeout=WAIT_SECONDS,
                                       headers={"Accept": "application/json"})

    def post(self, what, http=None, token=None, **body):
        return (http or self.http).post(f"{self.base}/{what}", json=body, timeout=WAIT_SECONDS,
                                        headers={"X-CSRFToken": token or self.token, "Accept": "application/json"})

    def upload(self, path, data, http=None, token=None):
        return (http or self.http).put(f"{self.base}/content", params={"path": str(path)}, data=data,
                                       timeout=WAIT_SECONDS * 2,
                                       headers={"X-CSRFToken": token or self.token, "Accept": "application/json",
                                                "Content-Type": "application/octet-stream"})

    def download(self, path, http=None):
        return (http or self.http).get(f"{self.base}/content", params={"path": str(path)}, stream=True,
                                       timeout=WAIT_SECONDS * 2)

    def close(self):
        self.ws.close()


@pytest.fixture
def terminal(server, sftp_sshd):
    opened = Terminal(server, sftp_sshd)
    yield opened
    opened.close()


def events(server, action, session):
    """Return a session's events of one action."""
    return [e for e in live_events(server, action) if e.session_id == session]


def test_twenty_megabytes_go_up_and_come_back_identical_with_their_hash_in_the_trail(server, terminal, workdir):
    data = os.urandom(20 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    target = workdir / "big.bin"
    answer = terminal.upload(target, data)
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"path": str(target), "size": len(data), "sha256": digest}
    assert hashlib.sha256(target.read_bytes()).hexdigest() == digest
    assert [p.name for p in workdir.iterdir()] == ["big.bin"]  # no part file left beside it

    response = terminal.download(target)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"] == "attachment; filename=\"big.bin\"; filename*=UTF-8''big.bin"
    assert hashlib.sha256(response.content).hexdigest() == digest

    uploaded = wait_for(lambda: events(server, "file.uploaded", terminal.session))
    downloaded = wait_for(lambda: events(server, "file.downloaded", terminal.session))
    for event in (uploaded[-1], downloaded[-1]):
        assert event.outcome == "success"
        assert event.details["sha256"] == digest and event.details["size"] == len(data)
        assert event.details["path"] == str(target) and event.details["session_id"] == terminal.session
        assert event.actor == "admin" and event.target.startswith("files-")


def test_the_listing_starts_at_home_and_shows_name_size_time_and_type(terminal, sftp_sshd, workdir):
    (workdir / "note.txt").write_bytes(b"12345")
    (workdir / "sub").mkdir()
    home = terminal.get()
    assert home.status_code == 200
    assert home.json()["path"] == str(sftp_sshd.home)
    listing = terminal.get(str(workdir)).json()
    assert listing["parent"] == str(workdir.parent) and listing["max_upload_mb"] == LIMIT_MB
    entries = {e["name"]: e for e in listing["entries"]}
    assert [e["name"] for e in listing["entries"]] == ["sub", "note.txt"]  # folders first
    assert entries["note.txt"]["size"] == 5 and entries["note.txt"]["type"] == "file"
    assert entries["sub"]["type"] == "folder" and entries["note.txt"]["path"] == str(workdir / "note.txt")
    assert entries["note.txt"]["modified"].endswith("Z")
    assert terminal.get(str(workdir / "sub" / "..")).json()["path"] == str(workdir)  # ".." resolves


def test_a_hostile_name_is_uploaded_listed_renamed_and_deleted_as_plain_data(server, terminal, workdir):
    name = "a b ünï <script>alert(1)<\\script>.txt"
    renamed = "renamed <img src=x onerror=alert(2)> ü.txt"
    assert terminal.upload(workdir / name, b"hello").status_code == 201
    assert [e["name"] for e in terminal.get(str(workdir)).json()["entries"]] == [name]
    response = terminal.download(workdir / name)
    assert response.content == b"hello"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="a b uni _script_alert(1)__script_.txt"; filename*=UTF-8\'\'')
    assert "<" not in disposition and "%3Cscript%3E" in disposition
    assert terminal.post("rename", path=str(workdir / name), name=renamed).status_code == 200
    assert [p.name for p in workdir.iterdir()] == [renamed]
    assert terminal.post("delete", path=str(workdir / renamed)).status_code == 200
    assert list(workdir.iterdir()) == []
    rename = wait_for(lambda: events(server, "file.renamed", terminal.session))[-1]
    assert rename.details["path"] == str(workdir / name) and rename.details["new_path"] == str(workdir / renamed)
    deleted = wait_for(lambda: events(server, "file.deleted", terminal.session))[-1]
    assert deleted.details["path"] == str(workdir / renamed) and deleted.details["size"] == 5


def test_folders_are_made_and_deleted_only_when_empty(server, terminal, workdir):
    assert terminal.post("folder", path=str(workdir), name="made").status_code == 201
    assert (workdir / "made").is_dir()
    again = terminal.post("folder", path=str(workdir), name="made")
    assert again.status_code == 409 and again.json()["message"] == f"{workdir / 'made'} already exists."
    (workdir / "made" / "inside").write_text("x")
    full = terminal.post("delete", path=str(workdir / "made"))
    assert full.status_code == 409 and "is not empty" in full.json()["message"]
    assert (workdir / "made" / "inside").exists()
    (workdir / "made" / "inside").unlink()
    assert terminal.post("delete", path=str(workdir / "made")).status_code == 200
    assert not (workdir / "made").exists()
    made = wait_for(lambda: events(server, "file.folder_created", terminal.session))
    assert [e.outcome for e in made][-2:] == ["success", "failure"]
    refused = [e for e in events(server, "file.deleted", terminal.session) if e.outcome == "failure"]
    assert refused and "is not empty" in refused[-1].details["error"]


@pytest.mark.parametrize("bad", ["", "..", "a/b", "x" * 256])
def test_bad_names_are_refused_with_a_reason(terminal, workdir, bad):
    answer = terminal.post("folder", path=str(workdir), name=bad)
    assert answer.status_code == 400
    assert answer.json()["message"]
    assert list(workdir.iterdir()) == []


def test_an_upload_over_the_limit_is_refused_and_leaves_nothing(server, terminal, workdir):
    # The header alone is refused: the answer comes before the body is read (so none is sent here).
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT_SECONDS)
    connection.putrequest("PUT", f"/terminals/sessions/{terminal.session}/files/content?"
                                 + urlencode({"path": str(workdir / "huge.bin")}))
    for header, value in {"Cookie": "; ".join(f"{c.name}={c.value}" for c in terminal.http.cookies),
                          "X-CSRFToken": terminal.token, "Accept": "application/json",
                          "Content-Type": "application/octet-stream",
                          "Content-Length": str((LIMIT_MB + 1) * 1024 * 1024)}.items():
        connection.putheader(header, value)
    connection.endheaders()
    answer = connection.getresponse()
    assert answer.status == 413
    assert json.loads(answer.read())["message"] == (f"The file is larger than the upload limit of {LIMIT_MB} MB "
                                                    "(SFTP_MAX_UPLOAD_MB); nothing was kept.")
    connection.close()
    assert list(workdir.iterdir()) == []
    failed = wait_for(lambda: events(server, "file.uploaded", terminal.session))[-1]
    assert failed.outcome == "failure" and "upload limit" in failed.details["error"]


def test_an_upload_cut_off_midway_leaves_nothing_on_the_device(server, terminal, workdir):
    cookie = "; ".join(f"{c.name}={c.value}" for c in terminal.http.cookies)
    path = f"/terminals/sessions/{terminal.session}/files/content?path={workdir}/cut.bin"
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall((f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nCookie: {cookie}\r\n"
                      f"X-CSRFToken: {terminal.token}\r\nContent-Type: application/octet-stream\r\n"
                      f"Content-Length: {4 * 1024 * 1024}\r\n\r\n").encode() + b"x" * (1024 * 1024))
        wait_for(lambda: list(workdir.iterdir()))  # the part file is being written
    failed = wait_for(lambda: [e for e in events(server, "file.uploaded", terminal.session) if e.outcome == "failure"])
    assert failed[-1].details["path"] == f"{workdir}/cut.bin" and "interrupted" in failed[-1].details["error"]
    wait_for(lambda: not list(workdir.iterdir()))


def test_errors_are_sentences_permission_denied_and_no_such_path(server, terminal, workdir):
    locked = workdir / "locked"
    locked.mkdir()
    locked.chmod(0)
    denied = terminal.get(str(locked))
    assert denied.status_code == 403
    assert denied.json()["message"] == f"Permission denied on the device: {locked}."
    upload = terminal.upload(locked / "f.txt", b"x")
    assert upload.status_code == 403 and upload.json()["message"].startswith("Permission denied on the device")
    missing = terminal.get(str(workdir / "nowhere"))
    assert missing.status_code == 404
    assert missing.json()["message"] == f"There is no file or folder {workdir / 'nowhere'} on the device."
    gone = terminal.download(workdir / "nothing.bin")
    assert gone.status_code == 404
    failed = wait_for(lambda: [e for e in events(server, "file.downloaded", terminal.session)
                               if e.outcome == "failure"])
    assert failed[-1].details["path"] == str(workdir / "nothing.bin")


def test_another_user_and_an_admin_get_not_found_for_someone_elses_files(server, sftp_sshd, workdir):
    name, password = new_user(server)
    owner = Terminal(server, sftp_sshd, name, password)
    try:
        assert owner.get(str(workdir)).status_code == 200
        other_name, other_password = new_user(server)
        other = server.login(other_name, other_password)
        admin = server.login()
        for http in (other, admin):
            token = server.csrf(http)
            listing = owner.get(str(workdir), http=http)
            assert listing.status_code == 404 and "not open" in listing.json()["message"]
            assert owner.upload(workdir / "x", b"x", http=http, token=token).status_code == 404
            assert owner.download(workdir / "x", http=http).status_code == 404
            assert owner.post("folder", http=http, token=token, path=str(workdir), name="y").status_code == 404
        assert list(workdir.iterdir()) == []
    finally:
        owner.close()


def test_a_closed_terminal_has_no_files(server, sftp_sshd, workdir):
    opened = Terminal(server, sftp_sshd)
    assert opened.get(str(workdir)).status_code == 200
    opened.close()
    ended = wait_for(lambda: events(server, "session.ended", opened.session))
    gone = opened.get(str(workdir))
    assert gone.status_code == 404, (ended[0].details, gone.text)
    assert "not open" in gone.json()["message"]


def test_a_device_with_file_transfer_off_refuses_with_403(server, sftp_sshd, workdir):
    opened = Terminal(server, sftp_sshd, allow_file_transfer="", file_transfer_shown="1")
    try:
        answer = opened.get(str(workdir))
        assert answer.status_code == 403
        assert answer.json()["message"].startswith("File transfer is off for this device")
        assert opened.upload(workdir / "x", b"x").status_code == 403
        assert list(workdir.iterdir()) == []
    finally:
        opened.close()


def test_only_an_admin_changes_allow_file_transfer(server, sftp_sshd):
    name, password = new_user(server)
    http = server.login(name, password)
    device_id = server.add_device(http, sftp_sshd, "mine-" + secrets.token_hex(3))
    form = http.get(f"{server.url}/devices/{device_id}/edit", timeout=WAIT_SECONDS).text
    assert 'name="allow_file_transfer"' not in form and "File transfer (SFTP): allowed." in form
    data = {"name": "mine2", "host": sftp_sshd.host, "port": sftp_sshd.port, "username": sftp_sshd.user,
            "auth_type": "password", "csrf_token": csrf_from(form), "file_transfer_shown": "1"}  # unchecked: off
    assert http.post(f"{server.url}/devices/{device_id}", data=data, timeout=WAIT_SECONDS).status_code == 200
    assert _allowed(server, device_id) is True  # a user's POST changes nothing
    admin = server.login()
    device_id = server.add_device(admin, sftp_sshd, "admins-" + secrets.token_hex(3))
    form = admin.get(f"{server.url}/devices/{device_id}/edit", timeout=WAIT_SECONDS).text
    box = re.search(r'<input[^>]*name="allow_file_transfer"[^>]*>', form)
    assert box and "checked" in box.group(0)  # new devices allow it
    data["csrf_token"] = csrf_from(form)
    assert admin.post(f"{server.url}/devices/{device_id}", data=data, timeout=WAIT_SECONDS).status_code == 200
    assert _allowed(server, device_id) is False
    updated = live_events(server, "device.updated")[-1]
    assert updated.actor == "admin" and "allow_file_transfer" in updated.details["fields"]
    assert updated.details["allow_file_transfer"] is False


def _allowed(server, device_id):
    """Return a device's allow_file_transfer from the server's database."""
    from app.devices.models import Device
    from app.extensions import db
    from tests.support import server_app

    with server_app(server).app_context():
        value = db.session.get(Device, device_id).allow_file_transfer
        db.session.remove()
        db.engine.dispose()
    return value


def test_without_a_session_cookie_the_routes_need_a_log_in(server, terminal):
    answer = requests.get(terminal.base, timeout=WAIT_SECONDS, allow_redirects=False)
    assert answer.status_code in (302, 401)


def test_a_download_the_browser_stops_is_recorded_as_a_failure_with_what_was_sent(server, terminal, workdir):
    target = workdir / "long.bin"
    target.write_bytes(os.urandom(24 * 1024 * 1024))
    response = terminal.download(target)
    assert response.status_code == 200
    first = next(response.iter_content(64 * 1024))
    assert first
    response.close()  # the browser goes away mid-file: its connection closes unread
    failed = wait_for(lambda: [e for e in events(server, "file.downloaded", terminal.session)
                               if e.outcome == "failure"])
    assert failed[-1].details["path"] == str(target)
    assert failed[-1].details["error"] == "the browser stopped the download"
    assert 0 < failed[-1].details["size"] < target.stat().st_size


def test_a_full_disk_is_said_plainly_and_leaves_nothing(server, terminal, sftp_sshd, workdir):
    small = workdir / "small"
    small.mkdir()
    entry = pwd.getpwnam(sftp_sshd.user)
    options = f"size=256k,uid={entry.pw_uid},gid={entry.pw_gid},mode=0755"
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(small)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        answer = terminal.upload(small / "fill.bin", os.urandom(1024 * 1024))
        assert answer.status_code == 507
        assert answer.json()["message"] == \
            f"The device could not write {small / 'fill.bin'}: its disk is probably full."
        assert list(small.iterdir()) == []  # the part file is gone too
        failed = wait_for(lambda: [e for e in events(server, "file.uploaded", terminal.session)
                                   if e.outcome == "failure" and e.details["path"] == str(small / "fill.bin")])
        assert "disk is probably full" in failed[-1].details["error"]
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "2000000"])
def test_a_nonsense_upload_limit_stops_the_start_naming_it(monkeypatch, value):
    from config import Config, ConfigError

    monkeypatch.setenv("SFTP_MAX_UPLOAD_MB", value)
    with pytest.raises(ConfigError) as error:
        Config({"SECRET_KEY": "k" * 40})
    assert "SFTP_MAX_UPLOAD_MB" in str(error.value)


def test_the_upload_limit_defaults_to_512_mb(monkeypatch):
    from config import Config

    monkeypatch.delenv("SFTP_MAX_UPLOAD_MB", raising=False)
    assert Config({"SECRET_KEY": "k" * 40}).SFTP_MAX_UPLOAD_MB == 512


def test_a_download_name_is_safe_whatever_it_holds():
    from app.terminals.files import disposition

    header = disposition('a"b\\c\r\nd; e=ü.txt')
    assert header == "attachment; filename=\"a_b_c__d_ e_u.txt\"; filename*=UTF-8''a%22b%5Cc%0D%0Ad%3B%20e%3D%C3%BC.txt"
    assert disposition("...") == "attachment; filename=\"download\"; filename*=UTF-8''..."
