"""Input backpressure: a remote that stops reading holds a bounded queue and ends the session as remote_stuck."""
import hashlib
import json
import os
import threading
import time
import uuid

import pytest
import simple_websocket

from app.terminals.bridge import ConnectRequest, connect
from tests.support import open_terminal, read_until, server_app

STALL = b"stty -icanon -echo; echo $((6*7))-stalled; sleep 300\n"  # a full PTY then blocks sshd's writes


def open_bridge(sshd, **limits):
    """Connect to the test sshd; return the bridge and the output its pump collects."""
    bridge = connect(ConnectRequest(sshd.host, sshd.port, sshd.user, password=sshd.password, timeout=5, **limits))
    output = bytearray()
    threading.Thread(target=bridge.pump, args=(output.extend,), daemon=True).start()
    return bridge, output


def wait_for(predicate, timeout, what):
    """Poll predicate until it is true; fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.01)


def flood(bridge, frames, size=1024 * 1024):
    """Write frames of size bytes from a thread; return the thread and a dict of how far it got."""
    progress = {"written": 0, "returned_at": None}

    def run():
        frame = b"x" * size
        for _ in range(frames):
            if bridge.closed.is_set():
                break
            bridge.write(frame)
            progress["written"] += size
        progress["returned_at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, progress


def stalled_bridge(sshd, **limits):
    """Return a bridge whose remote shell has stopped reading its input."""
    bridge, output = open_bridge(sshd, **limits)
    bridge.write(STALL)
    wait_for(lambda: b"42-stalled" in output, 10, "the stalled shell's marker")
    return bridge


def test_typing_still_echoes(sshd):
    bridge, output = open_bridge(sshd)
    try:
        bridge.write(b"echo $((40+2))-typed\n")
        wait_for(lambda: b"42-typed" in output, 10, "the echo")
        assert bridge.pending == 0 and bridge.bytes_in == len(b"echo $((40+2))-typed\n")
    finally:
        bridge.close("client_closed")


def test_input_larger_than_the_queue_arrives_whole_and_in_order(sshd):
    bridge, output = open_bridge(sshd, max_pending=64 * 1024)
    try:
        data = os.urandom(3 * 1024 * 1024)
        bridge.write(b"stty raw -echo; head -c %d | md5sum; stty sane\n" % len(data))
        time.sleep(0.5)  # let stty switch the PTY to raw before the bytes come
        for start in range(0, len(data), 1024 * 1024):
            bridge.write(data[start:start + 1024 * 1024])
            assert bridge.pending <= 64 * 1024
        digest = hashlib.md5(data).hexdigest().encode()
        wait_for(lambda: digest in output, 20, "the md5 of the input")
        assert not bridge.closed.is_set() and bridge.bytes_in >= len(data)
    finally:
        bridge.close("client_closed")


def test_a_remote_that_stops_reading_keeps_the_queue_bounded_and_ends_as_remote_stuck(sshd):
    limit = 256 * 1024
    bridge = stalled_bridge(sshd, max_pending=limit, stuck_after=1.5)
    thread, progress = flood(bridge, frames=300)
    largest = 0
    while not bridge.closed.wait(0.005):
        largest = max(largest, bridge.pending)
    closed_at = time.monotonic()
    thread.join(5)
    assert not thread.is_alive() and progress["returned_at"] - closed_at < 1
    assert bridge.reason == "remote_stuck"
    assert 0 < largest <= limit
    # The channel's window and the PTY took a few MiB at most; the rest of the 300 MiB was never read.
    assert progress["written"] < 20 * 1024 * 1024 and bridge.bytes_in < 20 * 1024 * 1024


def test_the_stuck_clock_ends_the_session_within_its_timeout(sshd):
    bridge = stalled_bridge(sshd, stuck_after=1.0)
    started = time.monotonic()
    thread, progress = flood(bridge, frames=300)
    assert bridge.closed.wait(10), "the bridge did not end"
    # Until the window shuts the remote is still taking input; from then on it gets stuck_after, not more.
    assert bridge.reason == "remote_stuck" and time.monotonic() - started < 6
    thread.join(2)
    assert not thread.is_alive()


def test_a_blocked_write_returns_when_someone_else_closes(sshd):
    bridge = stalled_bridge(sshd, stuck_after=60)
    thread, progress = flood(bridge, frames=300)
    wait_for(lambda: bridge.pending >= bridge.max_pending, 10, "a full queue")
    time.sleep(0.2)  # the write that filled the queue may still be returning
    written = progress["written"]
    time.sleep(0.3)
    assert progress["written"] == written and thread.is_alive(), "write() did not block on a full queue"
    bridge.close("terminated")
    thread.join(1)
    assert not thread.is_alive() and bridge.reason == "terminated" and bridge.pending == 0


def test_input_after_the_remote_exits_is_dropped_and_the_exit_is_reported(sshd):
    bridge, output = open_bridge(sshd)
    bridge.write(b"exit 3\n")
    assert bridge.closed.wait(10)
    bridge.write(b"more keys after the end\n")  # returns at once, raises nothing
    assert bridge.reason == "remote_exit" and bridge.exit_code == 3


def worker_pid(server):
    """Return the pid of the gunicorn worker: the one child of the master."""
    children = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
        except FileNotFoundError:  # it ended meanwhile
            continue
        if int(fields[1]) == server.proc.pid:
            children.append(int(entry))
    assert len(children) == 1, f"workers of {server.proc.pid}: {children}"
    return children[0]


def rss_mb(pid):
    """Return the resident memory of a process in MB."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def ended_events(server, device):
    """Return the session.ended events of a device's sessions, from the server's database."""
    from sqlalchemy import select

    from app.audit.models import AuditEvent
    from app.extensions import db

    app = server_app(server)
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "session.ended",
                                                           AuditEvent.target.startswith(device + " "))).all()
        db.session.expunge_all()
        db.engine.dispose()
    return rows


@pytest.fixture(scope="module")
def stuck_server(module_live_servers):
    """The app under gunicorn with a short SSH_WRITE_TIMEOUT, so a stuck device ends its session soon."""
    return module_live_servers(SSH_WRITE_TIMEOUT="2")


def flood_websocket(ws, pid, frames=300, limit=30):
    """Send frames of 1 MiB from a thread while reading; return peak worker RSS, controls, MiB sent, seconds."""
    frame, sent = b"x" * (1024 * 1024), []

    def send_all():
        try:
            for _ in range(frames):
                ws.send(frame)
                sent.append(1)
        except Exception:  # closed, reset or closing (wsproto): the session ended with frames still on their way
            pass

    sender = threading.Thread(target=send_all, daemon=True)
    started, peak, controls = time.monotonic(), rss_mb(pid), []
    sender.start()
    while not any(c["type"] == "closed" for c in controls) and time.monotonic() - started < limit:
        peak = max(peak, rss_mb(pid))
        try:
            message = ws.receive(timeout=0.05)
        except simple_websocket.ConnectionClosed:
            break
        if isinstance(message, str):
            controls.append(json.loads(message))
    ended_after = time.monotonic() - started
    try:
        ws.close()
    except (simple_websocket.ConnectionClosed, OSError):
        pass  # the server closed it first (with frames unread: a reset)
    sender.join(10)
    assert not sender.is_alive(), "the sender is still blocked after the session ended"
    return peak, controls, len(sent), ended_after


def test_a_flood_at_a_device_that_stops_reading_keeps_the_worker_small(stuck_server, sshd):
    http = stuck_server.login()
    device = "stuck-" + uuid.uuid4().hex[:8]
    device_id = stuck_server.add_device(http, sshd, device)
    ws = open_terminal(f"{stuck_server.ws_url}/terminals/{device_id}/ws", http, stuck_server.url)
    ws.send(STALL)
    read_until(ws, b"42-stalled")
    pid = worker_pid(stuck_server)
    before = rss_mb(pid)
    peak, controls, sent, ended_after = flood_websocket(ws, pid)
    print(f"worker RSS {before:.0f} MB before, {peak:.0f} MB at most while {sent} MiB were sent; "
          f"ended after {ended_after:.1f} s; {rss_mb(pid):.0f} MB after")
    assert peak - before < 60, f"the worker grew from {before:.0f} to {peak:.0f} MB"
    closed = [c for c in controls if c["type"] == "closed"]
    assert closed and closed[0]["reason"] == "remote_stuck", controls
    assert ended_after < 15  # SSH_WRITE_TIMEOUT is 2 s once the device's window is full
    wait_for(lambda: ended_events(stuck_server, device), 5, "session.ended in the trail")
    assert [e.details["reason"] for e in ended_events(stuck_server, device)] == ["remote_stuck"]
