"""A database that cannot be written (a full disk) leaves no ghost session and no open SSH connection."""
import json
import os
import re
import subprocess
import time

import pytest
import simple_websocket

from tests.support import (WAIT_SECONDS, SSHServer, connect_terminal, live_events, missing, open_terminal, read_until,
                           session_of)


def established(port):
    """Count established TCP connections to 127.0.0.1:port (from /proc, no tools needed)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


def fill(folder):
    """Fill the file system of folder to the last byte; return the filler's path."""
    path = folder / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)
    return path


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs for the database, unmounted afterwards."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        missing("a tmpfs mount (root)")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_full_disk_at_end_and_at_start(tmp_path, live_servers, small_disk, sshd):
    own_sshd = SSHServer(tmp_path / "sshd", key_path=sshd.key_path, password=sshd.password).start()
    server = live_servers(DATABASE_URL=f"sqlite:///{small_disk / 'gatehouse.db'}", GATEHOUSE_INSTANCE=str(small_disk))
    try:
        http = server.login()
        first = server.add_device(http, own_sshd, "full-a")
        second = server.add_device(http, own_sshd, "full-b")
        ws = open_terminal(f"{server.ws_url}/terminals/{first}/ws", http, server.url)
        ws.send(b"echo pid:$$:end | tr : =\n")
        pid = int(re.search(rb"pid=(\d+)=end", read_until(ws, b"=end")).group(1))
        filler = fill(small_disk)

        # The end of a session cannot be written: the SSH side closes anyway, the end waits.
        closed_at = time.time()
        ws.close()
        deadline = time.monotonic() + WAIT_SECONDS
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{pid}"), "the remote shell outlived the session"
        time.sleep(2)
        assert not [e for e in live_events(server, "session.ended") if e.target.startswith("full-a ")]

        # A session cannot start: the browser is told in a protocol message, no SSH connection stays.
        before = established(own_sshd.port)
        refused = connect_terminal(f"{server.ws_url}/terminals/{second}/ws", http, server.url)
        controls = []
        try:
            while True:
                frame = refused.receive(timeout=WAIT_SECONDS)
                assert frame is None or isinstance(frame, str), "no terminal output may arrive"
                if frame is None:
                    break
                controls.append(json.loads(frame))
        except simple_websocket.ConnectionClosed:
            pass
        assert controls[-1]["type"] == "error" and controls[-1]["reason"] == "audit", controls
        time.sleep(0.5)
        assert established(own_sshd.port) == before

        # Space again: the waiting end is written, with the time the session really ended.
        filler.unlink()
        deadline = time.monotonic() + WAIT_SECONDS
        ended = []
        while not ended and time.monotonic() < deadline:
            time.sleep(0.3)
            ended = [e for e in live_events(server, "session.ended") if e.target.startswith("full-a ")]
        assert len(ended) == 1 and ended[0].details["reason"] == "client_closed"
        from datetime import datetime

        real_end = datetime.fromisoformat(ended[0].details["ended_at"].replace("Z", "+00:00")).timestamp()
        assert abs(real_end - closed_at) < 2 and ended[0].occurred_at.timestamp() > closed_at + 2
        page = http.get(server.url + "/terminals/connected").text
        assert "full-a" not in page and "full-b" not in page  # no ghost in "Connected now"
    finally:
        server.stop()
        own_sshd.stop()


def test_full_disk_under_recordings_stops_the_recording_not_the_session(live_servers, small_disk, sshd):
    from tests.test_recording import server_key, wait_ended
    from app.recording.chunks import check, iter_cast
    from app.recording.store import LocalStore

    server = live_servers(RECORDINGS_DIR=str(small_disk / "recordings"))
    try:
        http = server.login()
        device = server.add_device(http, sshd, "full-recordings")
        ws = connect_terminal(f"{server.ws_url}/terminals/{device}/ws", http, server.url)
        session_id = session_of(ws)
        ws.send(b"echo kept-$((2*21))\r")
        read_until(ws, b"kept-42")
        time.sleep(1.5)  # flushed
        filler = fill(small_disk)
        ws.send(b"seq 1 20000; echo lost-$((2*22))\r")
        read_until(ws, b"lost-44")
        failed = None
        deadline = time.monotonic() + WAIT_SECONDS
        while failed is None and time.monotonic() < deadline:
            found = [e for e in live_events(server, "recording.failed") if e.session_id == session_id]
            failed = found[0] if found else None
            time.sleep(0.2)
        assert failed is not None and failed.severity == "warning" and "No space left" in failed.message
        ws.send(b"echo still-$((2*23))\r")  # the session goes on
        read_until(ws, b"still-46")
        ws.close()
        seal = wait_ended(server, session_id).details["recording"]
        assert seal["state"] == "failed" and "No space left" in seal["error"]
        filler.unlink()
        store = LocalStore(small_disk / "recordings")
        assert check(store, session_id, server_key(server), seal) == ("verified", None)
        text = b"".join(iter_cast(store, session_id, server_key(server)))
        assert b"kept-42" in text and b"lost-44" not in text
    finally:
        server.stop()
