"""Session recordings: the file format and its seal, then real terminals through gunicorn and sshd."""
import contextlib
import gzip
import json
import os
import signal
import stat
import time
import uuid

import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.extensions import db
from app.recording.chunks import MAGIC, check, iter_cast, recover
from app.recording.recorder import Recorder
from app.recording.store import LocalStore, RecordingError
from app.terminals.commands import CommandDetector, tokens
from app.terminals.models import SessionCommand
from tests.support import (WAIT_SECONDS, LiveServers, connect_terminal, open_terminal, read_until,
                           server_app, session_of)

KEY = bytes(range(32))


def cast_lines(store, name, key=KEY):
    """Return the decrypted asciicast: header dict and event lists."""
    text = b"".join(iter_cast(store, name, key)).decode()
    lines = [json.loads(line) for line in text.splitlines()]
    return lines[0], lines[1:]


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "recordings")


def make_recorder(store, **kwargs):
    """Return a recorder with a fake clock that the test moves."""
    now = [100.0]
    detector = CommandDetector(kwargs.get("cols", 80), kwargs.get("rows", 24))  # as a live terminal records
    recorder = Recorder(store, str(uuid.uuid4()), KEY, clock=lambda: now[0], detector=detector, tokens=tokens, **kwargs)
    return recorder, now


def test_asciicast_header_events_markers_and_seal(store):
    recorder, now = make_recorder(store, title="alice on db1 (10.0.0.5:22)", cols=120, rows=40)
    assert cast_lines(store, recorder.name)[0]["width"] == 120  # readable at once: the header is written
    now[0] += 0.5
    recorder.output(b"$ ")
    recorder.input(b"echo h\xc3")  # content-free: only that keys came
    recorder.output(b"echo h\xc3")  # UTF-8 split across reads
    recorder.output(b"\xa9llo")
    now[0] += 1
    recorder.input(b"\r")
    recorder.output(b"\r\nh\xc3\xa9llo\r\n$ ")
    recorder.flush()
    recorder.resize(100, 30)
    seal = recorder.finish()
    header, events = cast_lines(store, recorder.name)
    assert header["version"] == 2 and (header["width"], header["height"]) == (120, 40)
    assert header["title"] == "alice on db1 (10.0.0.5:22)" and header["env"] == {"TERM": "xterm-256color"}
    assert abs(header["timestamp"] - time.time()) < 60
    output = "".join(e[2] for e in events if e[1] == "o")
    assert output == "$ echo héllo\r\nhéllo\r\n$ "
    assert [e[1:] for e in events if e[1] in ("m", "r")] == [["m", "echo héllo"], ["r", "100x30"]]
    times = [e[0] for e in events]
    assert times == sorted(times) and times[0] == 0.5
    assert list(recorder.commands) == [(1.5, "echo héllo")]
    plain = b"".join(iter_cast(store, recorder.name, KEY))
    assert seal == {"sha256": __import__("hashlib").sha256(plain).hexdigest(), "bytes": len(plain),
                    "state": "complete"}


def test_stored_file_is_private_encrypted_and_holds_no_plaintext(store):
    recorder, _ = make_recorder(store)
    recorder.output(b"DATABASE_PASSWORD=s3cr3t-value\r\n" * 50)
    recorder.finish()
    path = store.path(recorder.name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(store.root.stat().st_mode) == 0o700
    raw = path.read_bytes()
    assert b"s3cr3t" not in raw and b"DATABASE" not in raw
    with pytest.raises(Exception):  # not a gzip file either: each chunk is encrypted after compression
        gzip.decompress(raw)
    with pytest.raises(RecordingError, match="does not decrypt"):
        b"".join(iter_cast(store, recorder.name, bytes(32)))  # another key


def test_check_names_altered_truncated_missing(store):
    recorder, _ = make_recorder(store)
    for i in range(3):
        recorder.output(f"line {i}\r\n".encode() * 200)
        recorder.flush()
    seal = recorder.finish()
    name, path = recorder.name, store.path(recorder.name)
    assert check(store, name, KEY, seal) == ("verified", None)
    original = path.read_bytes()
    flipped = bytearray(original)
    flipped[len(original) // 2] ^= 1
    path.write_bytes(bytes(flipped))
    assert check(store, name, KEY, seal)[0] == "altered"
    path.write_bytes(original[:-10])  # cut inside the last chunk
    assert check(store, name, KEY, seal)[0] == "truncated"
    chunks = list(_chunk_offsets(original))
    path.write_bytes(original[:chunks[-1]])  # cut at a chunk boundary: the end mark is gone
    assert check(store, name, KEY, seal)[0] == "truncated"
    path.write_bytes(original[:chunks[1]] + original[chunks[2]:])  # a chunk from the middle removed
    assert check(store, name, KEY, seal)[0] == "altered"
    path.unlink()
    assert check(store, name, KEY, seal)[0] == "missing"


def _chunk_offsets(data):
    """Yield the offset of each chunk in a stored recording."""
    offset = len(MAGIC)
    while offset < len(data):
        yield offset
        offset += 5 + int.from_bytes(data[offset:offset + 4], "big")


def test_recover_keeps_whole_chunks_of_a_killed_writer(store):
    recorder, _ = make_recorder(store)
    recorder.output(b"kept before the kill\r\n")
    recorder.flush()
    recorder.output(b"lost with the process\r\n")  # queued, never flushed
    path = store.path(recorder.name)
    with open(path, "ab") as handle:  # and a torn write at the end
        handle.write(b"\x00\x00\x01\x00\x00partial")
    seal = recover(store, recorder.name, KEY)
    assert seal["state"] == "interrupted"
    assert check(store, recorder.name, KEY, seal) == ("verified", None)
    _, events = cast_lines(store, recorder.name)
    assert "".join(e[2] for e in events) == "kept before the kill\r\n"


def test_size_cap_stops_with_a_marker(store):
    recorder, _ = make_recorder(store, max_bytes=4000)
    for _ in range(200):
        recorder.output(b"x" * 60)
    recorder.flush()
    recorder.output(b"after the cap")
    seal = recorder.finish()
    assert seal["state"] == "limited" and 3000 < seal["bytes"] <= 4200
    _, events = cast_lines(store, recorder.name)
    assert events[-1][1] == "m" and "RECORDING_MAX_MB" in events[-1][2]
    assert check(store, recorder.name, KEY, seal) == ("verified", None)


def test_a_write_that_fails_stops_the_recording_and_keeps_what_was_written(store, monkeypatch):
    recorder, _ = make_recorder(store)
    recorder.output(b"first\r\n")
    recorder.flush()

    class Full:
        def __init__(self, real):
            self.real = real

        def write(self, data):
            self.real.write(data[:7])  # a torn write, then the disk is full
            raise OSError(28, "No space left on device")

        def fileno(self):
            return self.real.fileno()

        def close(self):
            self.real.close()

    recorder._file = Full(recorder._file)
    recorder.output(b"second\r\n")
    recorder.flush()
    seal = recorder.finish()
    assert seal["state"] == "failed" and "No space left" in seal["error"]
    assert check(store, recorder.name, KEY, seal) == ("verified", None)


def test_store_refuses_hostile_names_and_unwritable_folders(tmp_path):
    store = LocalStore(tmp_path / "r")
    for name in ("../x", "a/b", "", "..", str(uuid.uuid4()) + "/../../etc"):
        with pytest.raises(RecordingError):
            store.path(name)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(RecordingError, match="not writable"):
        LocalStore(blocker / "recordings").check()


def test_a_recording_made_by_an_earlier_version_still_reads_and_verifies(tmp_path):
    # Made once and kept: the file format must not change under recordings already sealed in trails.
    name = "0f3c2a5e-7b1d-4e2a-9c3b-5d6e7f809a1b"
    stored = os.path.join(os.path.dirname(__file__), "data", "recording")
    store = LocalStore(stored)
    with open(os.path.join(stored, name + ".seal.json")) as handle:
        seal = json.load(handle)
    with open(os.path.join(stored, name + ".cast"), "rb") as handle:
        cast = handle.read()
    assert b"".join(iter_cast(store, name, KEY)) == cast
    assert check(store, name, KEY, seal) == ("verified", None)
    assert seal == {"sha256": __import__("hashlib").sha256(cast).hexdigest(), "bytes": len(cast), "state": "complete"}


# Through the real thing: gunicorn's gevent worker, OpenSSH, websockets.

def trail(server, action=None):
    """Return the events of a live server's trail, oldest first."""
    app = server_app(server)
    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.id)
        rows = db.session.scalars(query.where(AuditEvent.action == action) if action else query).all()
        commands = db.session.scalars(select(SessionCommand).order_by(SessionCommand.id)).all()
        db.session.expunge_all()
        db.engine.dispose()
    return rows, commands


def wait_ended(server, session_id, timeout=WAIT_SECONDS):
    """Wait for the session.ended event of a session; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ended = [e for e in trail(server, "session.ended")[0] if e.session_id == session_id]
        if ended:
            return ended[0]
        time.sleep(0.2)
    raise AssertionError(f"no session.ended for {session_id}")


def server_key(server):
    """Return the recording key of a live server (same SECRET_KEY as the tests)."""
    from app.crypto import recording_key

    app = server_app(server)
    with app.app_context():
        return recording_key()


def test_a_real_session_is_recorded_sealed_and_its_commands_stored(live_server, sshd):
    http = live_server.login()
    device = live_server.add_device(http, sshd, "rec-" + uuid.uuid4().hex[:6])
    ws = connect_terminal(f"{live_server.ws_url}/terminals/{device}/ws?cols=100&rows=30", http, live_server.url)
    session_id = session_of(ws)
    ws.send(b"echo rec-$((40+2))\r")
    read_until(ws, b"rec-42")
    ws.send(b"read -s -p 'secret: ' S\r")
    read_until(ws, b"secret: ")
    time.sleep(0.3)  # read -s may flush input typed before it turned echo off
    ws.send(b"hunter2\r")
    read_until(ws, b"$ ")
    ws.send(b"exit\r")
    ended = wait_ended(live_server, session_id)
    seal = ended.details["recording"]
    assert seal["state"] == "complete" and seal["bytes"] > 100
    store = LocalStore(live_server.workdir / "recordings")
    key = server_key(live_server)
    assert check(store, session_id, key, seal) == ("verified", None)
    header, events = cast_lines(store, session_id, key)
    assert (header["width"], header["height"]) == (100, 30)
    output = "".join(e[2] for e in events if e[1] == "o")
    assert "rec-42" in output and "hunter2" not in output
    markers = [e[2] for e in events if e[1] == "m"]
    assert markers[:2] == ["echo rec-$((40+2))", "read -s -p 'secret: ' S"] and "hunter2" not in " ".join(markers)
    commands = [c.text for c in trail(live_server)[1] if c.session_id == session_id]
    assert commands[:2] == markers[:2] and not any("hunter2" in c for c in commands)


@contextlib.contextmanager
def own_server(workdir, sshd, device, **env):
    """Serve the app with its own settings; yield it, a logged-in admin session and the id of a device."""
    with LiveServers(workdir) as servers:
        server = servers.start(workdir=workdir, **env)
        http = server.login()
        yield server, http, server.add_device(http, sshd, device)


def test_sigkill_leaves_a_readable_recording_sealed_by_server_restart(live_servers, sshd):
    server = live_servers()
    try:
        http = server.login()
        device = server.add_device(http, sshd, "killed")
        ws = open_terminal(f"{server.ws_url}/terminals/{device}/ws", http, server.url)
        ws.send(b"echo before-$((1+1))-kill\r")
        read_until(ws, b"before-2-kill")
        time.sleep(2.5)  # at least one flush (every second)
        session_id = trail(server, "session.started")[0][-1].session_id
        server.stop(signal.SIGKILL)
        server.start()  # the new process closes the orphan and seals what the dead one kept
        ended = wait_ended(server, session_id)
        assert ended.details["reason"] == "server_restart"
        seal = ended.details["recording"]
        assert seal["state"] == "interrupted"
        store = LocalStore(server.workdir / "recordings")
        key = server_key(server)
        assert check(store, session_id, key, seal) == ("verified", None)
        _, events = cast_lines(store, session_id, key)
        assert "before-2-kill" in "".join(e[2] for e in events if e[1] == "o")
    finally:
        server.stop()


def test_sessions_are_refused_when_recordings_cannot_be_written(tmp_path, sshd):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the folder should be")
    with own_server(tmp_path / "ro", sshd, "unrecorded", RECORDINGS_DIR=str(blocker / "recordings")) as (
            server, http, device):
        ws = connect_terminal(f"{server.ws_url}/terminals/{device}/ws", http, server.url)
        messages = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(m.get("type") == "error" for m in messages):
            frame = ws.receive(timeout=0.5)
            if isinstance(frame, str):
                messages.append(json.loads(frame))
        error = [m for m in messages if m.get("type") == "error"][0]
        assert error["reason"] == "recording" and "Recordings cannot be written" in error["message"]
        events = trail(server)[0]
        assert not [e for e in events if e.action == "session.started"]
        failed = [e for e in events if e.action == "session.failed"][-1]
        assert failed.details["reason"] == "recording_unavailable" and "not writable" in failed.message
        assert "could not start session" in failed.message


def test_a_session_past_its_cap_goes_on_unrecorded(tmp_path, sshd):
    with own_server(tmp_path / "cap", sshd, "capped", RECORDING_MAX_MB="1") as (server, http, device):
        ws = open_terminal(f"{server.ws_url}/terminals/{device}/ws", http, server.url)
        session_id = trail(server, "session.started")[0][-1].session_id
        ws.send(b"head -c 1500000 /dev/zero | base64 -w 100; echo bulk-$((2*3))-done\r")
        read_until(ws, b"bulk-6-done", timeout=30)
        ws.send(b"echo still-$((3*3))-here\r")
        read_until(ws, b"still-9-here")
        ws.close()
        ended = wait_ended(server, session_id)
        assert ended.details["recording"]["state"] == "limited"
        assert ended.details["reason"] == "client_closed"
        limited = [e for e in trail(server, "recording.limited")[0] if e.session_id == session_id]
        assert len(limited) == 1 and limited[0].severity == "notice"
        seal = ended.details["recording"]
        assert 1024 * 1024 - 70000 < seal["bytes"] <= 1024 * 1024 + 200
        store = LocalStore(server.workdir / "recordings")
        assert check(store, session_id, server_key(server), seal) == ("verified", None)


def test_recording_off_records_nothing(tmp_path, sshd):
    with own_server(tmp_path / "off", sshd, "plain", RECORDING="off") as (server, http, device):
        ws = open_terminal(f"{server.ws_url}/terminals/{device}/ws", http, server.url)
        session_id = trail(server, "session.started")[0][-1].session_id
        ws.close()
        ended = wait_ended(server, session_id)
        assert "recording" not in ended.details
        assert not os.path.exists(server.workdir / "recordings" / f"{session_id}.rec")
