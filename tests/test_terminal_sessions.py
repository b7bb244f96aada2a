"""Terminals end to end: gunicorn (gevent) + websocket + paramiko + a real OpenSSH sshd."""
import hashlib
import json
import os
import re
import socket
import threading
import time
import uuid

import pytest
import simple_websocket

from tests.support import (WAIT_SECONDS, SSHServer, connect_terminal, console, free_port, new_user, open_terminal,
                           read_until, server_app)


def name():
    return "dev-" + uuid.uuid4().hex[:8]


def frames(ws, until, timeout=WAIT_SECONDS):
    """Collect (bytes, [control messages]) until until(bytes, controls) is true; fail on timeout or close."""
    data, controls = b"", []
    deadline = time.monotonic() + timeout
    while not until(data, controls):
        assert time.monotonic() < deadline, f"nothing awaited came within {timeout} s: {data[-300:]!r} {controls}"
        try:
            frame = ws.receive(timeout=0.2)
        except simple_websocket.ConnectionClosed:
            raise AssertionError(f"the terminal closed first: {data[-300:]!r} {controls}") from None
        if isinstance(frame, bytes):
            data += frame
        elif frame is not None:
            controls.append(json.loads(frame))
    return data, controls


def closed_by_server(ws, timeout=WAIT_SECONDS):
    """Read until the server closes the websocket; return the control messages it sent."""
    controls = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            frame = ws.receive(timeout=0.2)  # buffered frames come out before the close is reported
        except simple_websocket.ConnectionClosed:
            return controls
        if isinstance(frame, str):
            controls.append(json.loads(frame))
    raise AssertionError(f"the server did not close the terminal within {timeout} s: {controls}")


@pytest.fixture
def terminal(live_server, sshd):
    """Return a function that opens a logged-in terminal to a fresh password device."""
    http = live_server.login()

    def open_one(**fields):
        device_id = live_server.add_device(http, sshd, name(), **fields)
        return open_terminal(f"{live_server.ws_url}/terminals/{device_id}/ws", http, live_server.url)

    return open_one


def test_echo_through_the_websocket(terminal):
    ws = terminal()
    ws.send(b"echo $((40+2))-$USER\n")
    read_until(ws, b"42-gatehouse-test")
    ws.close()


def test_key_authentication(terminal, sshd):
    ws = terminal(auth="key")
    ws.send(b"echo key-$((3*3))\n")
    read_until(ws, b"key-9")
    ws.close()


def test_five_megabytes_arrive_byte_exact(terminal, sshd):
    payload = os.urandom(5 * 1024 * 1024)
    path = sshd.home / "payload.bin"
    path.write_bytes(payload)
    ws = terminal()
    # Raw mode: the PTY passes bytes untouched (no CR/LF translation), so the stream must be exact.
    # The markers are spelt differently in the command, so its echo cannot be mistaken for them; they are
    # long and unique, so neither the random payload nor the prompt that may share END's frame holds them.
    tag = uuid.uuid4().hex
    begin, end = f"BEGIN-{tag}".encode(), f"END-{tag}".encode()
    ws.send(f"stty raw -echo; printf 'BEG%sIN-{tag}' ''; cat ~/payload.bin; printf 'E%sND-{tag}' ''; stty sane\n"
            .encode())
    data, _ = frames(ws, lambda d, c: end in d[-65536:], timeout=60)
    body = data[data.index(begin) + len(begin):data.rindex(end)]
    assert len(body) == len(payload)
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(payload).hexdigest()
    ws.close()


def test_resize_reaches_the_remote_side(terminal):
    ws = terminal()
    ws.send(json.dumps({"type": "resize", "cols": 132, "rows": 43}))
    ws.send(b"stty size\n")
    read_until(ws, b"43 132")
    # A program waiting for SIGWINCH sees the new size when the browser resizes.
    # The handler writes with os.write: a print() there can land inside the main print() ("reentrant call").
    ws.send(b"python3 -c \"import signal,os; signal.signal(signal.SIGWINCH, lambda *a: os.write(1, "
            b"('win' 'ch %d %d\\n' % tuple(os.get_terminal_size())).encode())); print('wait' 'ing', flush=True); "
            b"signal.pause()\"\n")
    read_until(ws, b"waiting")
    ws.send(json.dumps({"type": "resize", "cols": 100, "rows": 31}))
    read_until(ws, b"winch 100 31")
    ws.close()


def test_exit_closes_the_socket(terminal):
    ws = terminal()
    ws.send(b"exit 3\n")
    controls = closed_by_server(ws)
    assert controls[-1]["type"] == "closed" and "exit status 3" in controls[-1]["message"]
    assert controls[-1]["reason"] == "remote_exit"


def shell_alive(pid):
    return os.path.exists(f"/proc/{pid}")


def test_client_close_ends_the_remote_shell(terminal):
    ws = terminal()
    ws.send(b"echo pid:$$:end | tr : =\n")  # the echoed command cannot match the answer
    pid = int(re.search(rb"pid=(\d+)=end", read_until(ws, b"=end")).group(1))
    assert shell_alive(pid)
    ws.close()
    deadline = time.monotonic() + 3
    while shell_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not shell_alive(pid), "the remote shell outlived the browser tab"


def failing(live_server, sshd, **fields):
    """Open a terminal that cannot connect; return the control messages until the server closes it."""
    http = live_server.login()
    device_id = live_server.add_device(http, sshd, name(), **fields)
    ws = connect_terminal(f"{live_server.ws_url}/terminals/{device_id}/ws", http, live_server.url)
    return closed_by_server(ws)


def test_wrong_password(live_server, sshd):
    controls = failing(live_server, sshd, password="not-the-password")
    assert controls[-1]["type"] == "error" and controls[-1]["reason"] == "auth_rejected"
    assert "Authentication as gatehouse-test" in controls[-1]["message"]
    assert "not-the-password" not in json.dumps(controls)


def test_closed_port(live_server, sshd):
    controls = failing(live_server, sshd, port=free_port())
    assert controls[-1]["reason"] == "refused" and "refused" in controls[-1]["message"]


def test_host_that_never_answers(live_server, sshd):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts (the kernel does) and never says a word
    try:
        started = time.monotonic()
        controls = failing(live_server, sshd, port=silent.getsockname()[1])
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert controls[-1]["reason"] == "unreachable" and "within 3 s" in controls[-1]["message"]
    assert elapsed < 10


def test_changed_host_key_is_refused_until_forgotten(live_server, sshd, tmp_path):
    first = SSHServer(tmp_path / "a", host_key_type="ed25519", key_path=sshd.key_path, password=sshd.password).start()
    http = live_server.login()
    device_id = live_server.add_device(http, first, name())
    url = f"{live_server.ws_url}/terminals/{device_id}/ws"
    open_terminal(url, http, live_server.url).close()
    first.stop()
    second = SSHServer(tmp_path / "b", port=first.port, host_key_type="rsa", key_path=sshd.key_path,
                       password=sshd.password).start()
    try:
        controls = closed_by_server(connect_terminal(url, http, live_server.url))
        error = controls[-1]
        assert error["reason"] == "host_key_mismatch" and "has changed" in error["message"]
        assert first.fingerprint() in error["message"] and second.fingerprint() in error["message"]
        page = http.get(live_server.url + "/terminals/hostkeys").text
        key_id = re.search(r'id="hostkey-(\d+)">\s*<td>127\.0\.0\.1:' + str(first.port), page).group(1)
        token = live_server.csrf(http)
        http.post(f"{live_server.url}/terminals/hostkeys/{key_id}/forget", data={"csrf_token": token})
        ws = open_terminal(url, http, live_server.url)  # trusts the new key now
        ws.close()
        assert second.fingerprint() in http.get(live_server.url + "/terminals/hostkeys").text
    finally:
        second.stop()


@pytest.mark.parametrize("origin", ["http://evil.example", "null", ""])
def test_cross_origin_upgrade_refused(live_server, sshd, origin):
    http = live_server.login()
    device_id = live_server.add_device(http, sshd, name())
    with pytest.raises(simple_websocket.ConnectionError, match="403"):
        connect_terminal(f"{live_server.ws_url}/terminals/{device_id}/ws", http, origin)


def test_anonymous_and_foreign_devices_refused(live_server, sshd):
    http = live_server.login()
    device_id = live_server.add_device(http, sshd, name())
    url = f"{live_server.ws_url}/terminals/{device_id}/ws"
    import requests

    with pytest.raises(simple_websocket.ConnectionError, match="302"):
        connect_terminal(url, requests.Session(), live_server.url)
    bob = "bob-" + uuid.uuid4().hex[:6]
    console(live_server, "users", "create", bob, "--password", "bob-password-long", "--no-must-change")
    with pytest.raises(simple_websocket.ConnectionError, match="404"):
        connect_terminal(url, live_server.login(bob, "bob-password-long"), live_server.url)


def test_malformed_and_oversized_frames_do_not_hurt(terminal, live_server):
    ws = terminal()
    for bad in ["not json", "[1, 2]", '{"type": "resize", "cols": "wide", "rows": 3}',
                '{"type": "resize", "cols": 100000, "rows": 3}', '{"type": "resize", "cols": true, "rows": 3}',
                '{"type": "launch-missiles"}', "{" * 5000]:
        ws.send(bad)
    _, controls = frames(ws, lambda d, c: len(c) >= 7)
    assert [c["type"] for c in controls] == ["error"] * 7
    ws.send(b"echo still-$((1+1))\n")
    read_until(ws, b"still-2")  # the session lives on
    ws.send(b"x" * (1024 * 1024 + 1))  # over WS_MAX_MESSAGE_BYTES: that connection is dropped...
    closed_by_server(ws)
    again = terminal()  # ...and the worker serves the next one
    again.send(b"echo al''ive\n")
    read_until(again, b"alive")
    again.close()


def test_many_terminals_at_once(live_server, sshd):
    """Twenty terminals opened in parallel on one worker all answer (500 are in bench/terminals.py)."""
    http = live_server.login()
    url = f"{live_server.ws_url}/terminals/{live_server.add_device(http, sshd, name())}/ws"
    sockets, errors = [], []

    def one():
        try:
            sockets.append(open_terminal(url, http, live_server.url))
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and len(sockets) == 20
    for i, ws in enumerate(sockets):
        ws.send(f"echo n{i}-$((40+2))\n".encode())
    for i, ws in enumerate(sockets):
        read_until(ws, f"n{i}-42".encode())
        ws.close()


def test_network_loss_is_detected_by_missed_pings(live_servers, sshd):
    """A browser that vanishes without a close frame (and answers no ping) is found gone: the session detaches
    (kept for a resume; tests/test_resume.py follows it to its end as `disconnected`)."""
    import base64

    live_server = live_servers(WS_PING_SECONDS="2")
    http = live_server.login(*new_user(live_server))  # a session left detached: not the admin's
    device = name()
    device_id = live_server.add_device(http, sshd, device)
    cookie = "; ".join(f"{c.name}={c.value}" for c in http.cookies)
    raw = socket.create_connection(("127.0.0.1", live_server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall((f"GET /terminals/{device_id}/ws HTTP/1.1\r\nHost: 127.0.0.1:{live_server.port}\r\n"
                 f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 f"Sec-WebSocket-Version: 13\r\nOrigin: {live_server.url}\r\nCookie: {cookie}\r\n\r\n").encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 101")
    started = time.monotonic()
    # From here on the "browser" reads nothing and answers no ping, like a laptop whose Wi-Fi died.
    detached = None
    while time.monotonic() - started < 15 and detached is None:
        time.sleep(0.5)
        detached = next((e for e in session_rows(live_server) if e.action == "session.detached"
                         and e.target.startswith(f"{device} ")), None)
    raw.close()
    assert detached is not None and detached.details["close_code"] in (1005, 1006, None)  # no close frame
    assert time.monotonic() - started < 3 * 2 + 5  # WS_PING_SECONDS=2


def session_rows(server):
    from sqlalchemy import select

    from app.audit.models import AuditEvent
    from app.extensions import db

    app = server_app(server)
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action.like("session.%"))).all()
        db.session.expunge_all()
        db.engine.dispose()
    return rows


def test_admin_terminates_a_session(live_server, sshd):
    http = live_server.login()
    device = name()
    device_id = live_server.add_device(http, sshd, device)
    ws = open_terminal(f"{live_server.ws_url}/terminals/{device_id}/ws", http, live_server.url)
    page = http.get(live_server.url + "/terminals/connected").text
    # This test's session: the shared server may hold others (detached ones wait for a resume).
    session_id = re.search(r'id="session-([0-9a-f-]{36})"><td class="who">[^<]*</td><td>(?:<a [^>]*>)?'
                           + re.escape(device) + " ", page).group(1)
    token = live_server.csrf(http)
    response = http.post(f"{live_server.url}/terminals/sessions/{session_id}/terminate", headers={"X-CSRFToken": token})
    assert response.status_code == 204 and response.headers["HX-Trigger"] == "refresh"
    controls = closed_by_server(ws)
    assert controls[-1]["type"] == "closed" and controls[-1]["reason"] == "terminated"
    rows = [e for e in session_rows(live_server) if e.session_id == session_id]
    assert [e.action for e in rows] == ["session.started", "session.terminated", "session.ended"]
    assert rows[-1].details["reason"] == "terminated"
    again = http.post(f"{live_server.url}/terminals/sessions/{session_id}/terminate", headers={"X-CSRFToken": token})
    assert again.status_code == 404


def test_unreadable_stored_credentials_are_a_clear_connect_error(app):
    from app.devices.credentials import CredentialError, open_credentials
    from app.devices.models import Device

    with app.app_context():
        device = Device(name="x", host="127.0.0.1", port=22, username="u", auth_type="password",
                        password_enc=b"\x01" + b"\x00" * 40)  # not encrypted with this key
        with pytest.raises(CredentialError) as error:
            open_credentials(device)
    assert error.value.reason == "credentials_unreadable" and "SECRET_KEY" in error.value.message


@pytest.mark.parametrize("stored", ["not-the-passphrase", None])
def test_wrong_or_missing_stored_passphrase_is_its_own_connect_error(app, stored):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from app import crypto
    from app.devices.credentials import CredentialError, open_credentials
    from app.devices.models import Device

    locked = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(b"the-passphrase")).decode()
    with app.app_context():
        device = Device(name="x", host="127.0.0.1", port=22, username="u", auth_type="key",
                        private_key_enc=crypto.encrypt(locked, "private_key"),
                        passphrase_enc=crypto.encrypt(stored, "passphrase"))
        with pytest.raises(CredentialError) as error:
            open_credentials(device)
        assert error.value.reason == "bad_passphrase" and "passphrase" in error.value.message
        device.passphrase_enc = crypto.encrypt("the-passphrase", "passphrase")
        credentials = open_credentials(device)  # the right one opens it
    assert credentials.pkey.get_name() == "ssh-ed25519" and credentials.password is None
    assert "BEGIN" not in repr(credentials)  # a key never reaches a log line
