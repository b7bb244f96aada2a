"""Issue 20, item 4: how a session ended, in words, in the trail (sentence and badge; lost and cut-off ends not green)
and on the session page (the sentence, not the code); first through the app's client, then with a real sshd,
a network that goes away and a server that restarts."""
import html as html_lib
import os
import re
import socket
import subprocess
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.audit.events import record
from app.auth import logins
from app.dbtypes import now_utc
from app.extensions import db
from app.session_ends import CUT, END_REASONS, ENDED, LOST, describe_end
from app.terminals import messages, orphans, registry, session_rows
from app.terminals.models import TerminalSession
from app.terminals.session_events import SessionMetadata
from tests.support import ROOT, AuthActions, open_terminal, wait_for
from tests.test_replay import read_live

HOST = socket.gethostname()


def reasons_in_the_code():
    """Return every end reason the code can give a session: the tab's sentences, log-in ends, and each literal handed
    to close(), request_end() or a reason default."""
    found = set(messages.END_MESSAGES) | {registry.LOGIN_REASONS.get(reason, reason) for reason in logins.REASONS}
    found |= {"server_restart", "lost"}  # orphans._orphan_reason's answers
    patterns = [r'\bclose\(\s*"([a-z_]+)"', r'\brequest_end\(\s*"([a-z_]+)"',
                r'def (?:end|close)\w*\([^)]*\breason="([a-z_]+)"']
    for path in (ROOT / "app").rglob("*.py"):
        text = path.read_text()
        for pattern in patterns:
            found |= set(re.findall(pattern, text))
    # The bridge names how its channel ended.
    return found | set(re.findall(r'\breason = "([a-z_]+)"', (ROOT / "app/terminals/bridge.py").read_text()))


def test_every_reason_a_session_can_end_with_has_words():
    named = reasons_in_the_code()
    assert {"disconnected", "server_restart", "terminated", "access_revoked", "remote_exit"} <= named  # the scan works
    assert sorted(named - set(END_REASONS)) == []
    for reason in named:
        end = describe_end(reason)
        assert "does not name" not in end.words and end.sentence.endswith(".")


@pytest.mark.parametrize("reason, kind", [("remote_exit", ENDED), ("client_closed", ENDED), ("disconnected", LOST),
                                          ("lost", LOST), ("server_restart", CUT), ("terminated", CUT)])
def test_lost_and_cut_off_ends_do_not_look_ordinary(reason, kind):
    end = describe_end(reason)
    assert end.kind == kind and end.look == ("ok" if kind == ENDED else "warning")
    assert end.badge == {"ended": "Session ended", "lost": "Session lost", "cut": "Session cut off"}[kind]


def dead_pid():
    """Return the pid of a process that has just exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def open_row(worker, heartbeat_age=timedelta(seconds=1)):
    """Store an open session of the admin held by worker, with its start event; return its id."""
    target = f"web-{uuid.uuid4().hex[:6]} (10.0.0.1:22)"
    row = TerminalSession(id=str(uuid.uuid4()), user_id=1, actor="admin", target=target,
                          source_ip="127.0.0.1", worker=worker, started_at=now_utc() - timedelta(minutes=5),
                          heartbeat_at=now_utc() - heartbeat_age)
    db.session.add(row)
    db.session.commit()
    record("session.started", f"started session with {row.target}", actor="admin", user_id=1, target=row.target,
           session_id=row.id)
    return row.id


def row_of(html, session_id):
    """Return the class and the cells of the trail's row of a session's end."""
    for match in re.finditer(r'<tr class="([^"]*)" data-action="session.ended">(.*?)</tr>', html, re.S):
        if f"/sessions/{session_id}" in match.group(2):
            return match.group(1), match.group(2)
    raise AssertionError(f"no session.ended row of {session_id}")


def visible_text(fragment):
    """Return what a reader sees of some HTML: its text without tags or attributes."""
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))).strip()


def assert_told(admin, session_id, reason):
    """The trail's row and the session page say how the session ended, in words; the badge and colour follow."""
    end = describe_end(reason)
    classes, cells = row_of(admin.get("/audit/rows?action=session.ended&size=200").get_data(as_text=True), session_id)
    assert f"end-{end.look}" in classes.split()
    text = visible_text(cells)
    assert f"{end.badge} stopped session with " in text and f") — {end.words} session " in text
    page = admin.get(f"/sessions/{session_id}").get_data(as_text=True)
    told = re.search(r'<dt>How it ended</dt><dd class="end-reason">(.*?)</dd>', page, re.S).group(1)
    assert visible_text(told) == end.sentence and f'class="end-{end.look}"' in told
    assert reason not in visible_text(told) or reason in end.words


def test_the_trail_and_the_session_page_say_how_each_session_ended(app):
    with app.app_context():
        restarted = open_row(f"{HOST}:{dead_pid()}")  # its process died with the server
        lost = open_row("node-gone:4242", heartbeat_age=timedelta(minutes=10))
        others = {reason: open_row(f"{HOST}:{os.getpid()}") for reason in
                  ("remote_exit", "client_closed", "disconnected", "terminated", "access_revoked", "device_deleted")}
        assert orphans.sweep_orphans(timedelta(seconds=30)) == 2
        for reason, session_id in others.items():
            row = db.session.get(TerminalSession, session_id)
            session_rows.close_row(SessionMetadata.of(row), reason, 1, 2, now_utc())
    admin = app.test_client()
    AuthActions(admin).login()
    assert_told(admin, restarted, "server_restart")
    assert_told(admin, lost, "lost")
    for reason, session_id in others.items():
        assert_told(admin, session_id, reason)
    green = row_of(admin.get("/audit/rows?action=session.ended&size=200").get_data(as_text=True), others["remote_exit"])
    assert "Session ended" in visible_text(green[1]) and "end-ok" in green[0]


def test_a_code_nobody_named_still_reads_as_words_with_a_warning_look(app):
    with app.app_context():
        session_id = open_row(f"{HOST}:{os.getpid()}")
        session_rows.close_row(SessionMetadata.of(db.session.get(TerminalSession, session_id)), "solar_flare", 0, 0,
                               now_utc())
    admin = app.test_client()
    AuthActions(admin).login()
    classes, cells = row_of(admin.get("/audit/rows").get_data(as_text=True), session_id)
    assert "end-warning" in classes and "for a reason this version does not name (solar_flare)" in visible_text(cells)


def drop_the_network(server, http, device_id):
    """Open a terminal over a raw socket that then reads nothing and answers no ping, like a laptop whose Wi-Fi died."""
    import base64

    cookie = "; ".join(f"{c.name}={c.value}" for c in http.cookies)
    raw = socket.create_connection(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall((f"GET /terminals/{device_id}/ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                 f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 f"Sec-WebSocket-Version: 13\r\nOrigin: {server.url}\r\nCookie: {cookie}\r\n\r\n").encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 101")
    return raw


def ended(server, label):
    """Return the end row of the session on the device of this label, once it has ended."""
    rows = read_live(server, select(TerminalSession).where(TerminalSession.target.startswith(label + " "),
                                                           TerminalSession.ended_at.is_not(None)))
    return rows[0] if rows else None


def test_a_lost_network_and_a_server_restart_read_as_such_in_the_trail(live_servers, sshd):
    server = live_servers(TERMINAL_RESUME_SECONDS="1", WS_PING_SECONDS="2")  # a lost browser found in 2–4 s
    try:
        http = server.login()
        lost_label, restart_label = "lost-" + uuid.uuid4().hex[:6], "restart-" + uuid.uuid4().hex[:6]
        raw = drop_the_network(server, http, server.add_device(http, sshd, lost_label))
        lost = wait_for(lambda: ended(server, lost_label))  # missed pings (WS_PING_SECONDS=2)
        raw.close()
        ws = open_terminal(f"{server.ws_url}/terminals/{server.add_device(http, sshd, restart_label)}/ws", http,
                           server.url)
        server.stop()  # SIGTERM: the graceful shutdown closes every terminal it holds, this one's socket included
        wait_for(lambda: not ws.connected)
        server.start()
        restarted = wait_for(lambda: ended(server, restart_label))
        admin = server.login()
        trail = admin.get(f"{server.url}/audit/rows", params={"action": "session.ended"}).text
        for row, reason, words in ((lost, "disconnected", "the network was lost"),
                                   (restarted, "server_restart", "the server restarted")):
            assert row.end_reason == reason
            classes, cells = row_of(trail, row.id)
            assert "end-warning" in classes and f") — {words} session " in visible_text(cells)
            assert "Session ended" not in visible_text(cells)
            page = admin.get(f"{server.url}/sessions/{row.id}").text
            told = re.search(r'<dd class="end-reason">(.*?)</dd>', page, re.S).group(1)
            assert visible_text(told) == words.capitalize() + "." and reason not in visible_text(told)
    finally:
        server.stop()
