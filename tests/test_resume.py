"""Terminals that survive their browser: detach on a dropped socket, resume by the owner alone, end when the time
runs out or an end rule strikes (docs/protocol.md, Resuming). Real sshd, real gunicorn, raw websocket clients."""
import json
import re
import socket
import time
import uuid

import pytest
import simple_websocket
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.terminals.models import TerminalSession
from tests.support import WAIT_SECONDS, connect_terminal, new_user, wait_for
from tests.test_replay import read_live

COUNTER = b"cd /tmp && mkdir -p resume-here && cd resume-here && for i in $(seq 1 100000); do echo n$i; sleep 0.01; done\n"


class Reader:
    """A terminal websocket read frame by frame: output bytes counted (the resume offset), control messages kept."""

    def __init__(self, ws):
        self.ws, self.output, self.controls, self.offset = ws, b"", [], 0

    def pump(self, until, timeout=WAIT_SECONDS):
        """Read until until(self) is true; fail after timeout."""
        deadline = time.monotonic() + timeout
        while not until(self):
            assert time.monotonic() < deadline, (self.controls, self.output[-300:])
            frame = self.ws.receive(timeout=0.2)
            if isinstance(frame, bytes):
                self.output += frame
                self.offset += len(frame)
            elif frame is not None:
                message = json.loads(frame)
                self.controls.append(message)
                if message["type"] in ("connected", "resumed"):
                    self.offset = message["offset"]
        return self

    def control(self, kind):
        """Return the first control message of this type, or None."""
        return next((c for c in self.controls if c["type"] == kind), None)

    def drop(self):
        """Lose the network: the socket goes without a close frame."""
        self.ws.sock.shutdown(socket.SHUT_RDWR)
        self.ws.sock.close()


def events(server, session_id):
    """Return the trail's events of one session, oldest first."""
    return read_live(server, select(AuditEvent).where(AuditEvent.session_id == session_id).order_by(AuditEvent.id))


def actions(server, session_id):
    """Return the actions of one session's events, oldest first."""
    return [e.action for e in events(server, session_id)]


def open_counting(server, http, sshd):
    """Open a terminal on a new device and start a counter in a folder of its own; return (reader, session id)."""
    device_id = server.add_device(http, sshd, "resume-" + uuid.uuid4().hex[:6])
    reader = Reader(connect_terminal(f"{server.ws_url}/terminals/{device_id}/ws", http, server.url))
    reader.pump(lambda r: r.control("connected"))
    reader.ws.send(COUNTER)
    reader.pump(lambda r: b"n50\r\n" in r.output)
    return reader, reader.control("connected")["session"]


def open_detached(server, http, sshd):
    """Open a counting terminal and lose its network; return (its first reader, session id) once it is detached."""
    reader, session_id = open_counting(server, http, sshd)
    reader.drop()
    wait_for(lambda: "session.detached" in actions(server, session_id))
    return reader, session_id


def ended_row(server, session_id):
    """Wait until the session's row is ended; return it."""
    return wait_for(lambda: read_live(server, select(TerminalSession).where(
        TerminalSession.id == session_id, TerminalSession.ended_at.is_not(None))))[0]


def resume(server, http, session_id, offset=0, monkeypatch=None, source=None):
    """Attach to a session again; return its reader once the server answered."""
    if source:
        from tests.support import _BoundSockets

        monkeypatch.setattr(simple_websocket.ws, "socket", _BoundSockets(source))
    url = f"{server.ws_url}/terminals/sessions/{session_id}/ws?offset={offset}&cols=100&rows=30"
    reader = Reader(connect_terminal(url, http, server.url))
    if source:
        monkeypatch.undo()
    return reader.pump(lambda r: r.controls)


def interrupt(reader):
    """Stop the counter with Ctrl+C (again while it still counts: a ^C between two commands of the loop can miss)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        reader.ws.send(b"\x03")
        mark = len(reader.output)
        try:
            return reader.pump(lambda r: re.search(rb"\$ $", r.output[mark:]), timeout=2)
        except AssertionError:
            continue  # still counting
    raise AssertionError("the counter did not stop")


def numbers(output):
    """Return the counter's numbers as the screen shows them, in order."""
    return [int(n) for n in re.findall(rb"^n(\d+)\r$", output, re.M)]


def test_a_dropped_socket_is_resumed_without_a_gap_in_the_same_shell(live_server, sshd):
    http = live_server.login(*new_user(live_server))  # not the admin: browser tests restore the admin's
    first, session_id = open_detached(live_server, http, sshd)
    second = resume(live_server, http, session_id, offset=first.offset)
    resumed = second.control("resumed")
    assert resumed["session"] == session_id and resumed["offset"] == first.offset and not resumed["reset"]
    goal = f"\nn{numbers(first.output)[-1] + 30}\r\n".encode()
    second.pump(lambda r: goal in first.output + r.output)
    seen = numbers(first.output + second.output)
    assert seen == list(range(seen[0], seen[0] + len(seen))), seen  # no number lost, none twice
    interrupt(second)
    second.ws.send(b"echo at-$PWD\n")
    second.pump(lambda r: b"at-/tmp/resume-here" in r.output)
    trail = events(live_server, session_id)
    assert [e.action for e in trail].count("session.ended") == 0
    detached = next(e for e in trail if e.action == "session.detached")
    back = next(e for e in trail if e.action == "session.resumed")
    assert detached.details["close_code"] in (1005, 1006, None) and back.source_ip == "127.0.0.1"
    assert back.details["detached_s"] >= 0 and back.details["taken_over"] is False
    second.ws.close()


def test_a_page_with_nothing_on_screen_gets_the_kept_output(live_server, sshd):
    http = live_server.login(*new_user(live_server))  # not the admin: browser tests restore the admin's
    first, session_id = open_detached(live_server, http, sshd)
    again = resume(live_server, http, session_id)  # a reloaded page: offset 0
    assert again.control("resumed")["reset"] is True
    again.pump(lambda r: len(numbers(r.output)) > 20)
    assert numbers(again.output)[0] <= numbers(first.output)[-1]  # the screen is redrawn from what was kept
    again.ws.close()


def test_a_second_browser_takes_the_session_over_and_the_first_is_told(live_server, sshd, monkeypatch):
    http = live_server.login(*new_user(live_server))  # not the admin: browser tests restore the admin's
    first, session_id = open_counting(live_server, http, sshd)
    second = resume(live_server, http, session_id, offset=first.offset, monkeypatch=monkeypatch, source="127.0.0.2")
    assert second.control("resumed")["reset"] is False
    with pytest.raises(simple_websocket.ConnectionClosed):
        first.pump(lambda r: False)
    assert first.control("moved")["message"] == "This session was resumed in another window."
    back = wait_for(lambda: [e for e in events(live_server, session_id) if e.action == "session.resumed"])[0]
    assert back.source_ip == "127.0.0.2" and back.details["previous_source_ip"] == "127.0.0.1"
    assert back.details["taken_over"] is True
    second.ws.close()


def test_only_the_owner_resumes_others_get_nothing_and_are_recorded(live_server, sshd):
    http = live_server.login(*new_user(live_server))
    first, session_id = open_detached(live_server, http, sshd)
    name, password = new_user(live_server)
    stranger = resume(live_server, live_server.login(name, password), session_id)
    assert stranger.control("error")["reason"] == "not_resumable" and stranger.output == b""
    refused = wait_for(lambda: [e for e in events(live_server, session_id) if e.action == "session.resume_refused"])
    assert refused[0].actor == name and refused[0].outcome == "failure"
    admin = resume(live_server, live_server.login(), session_id)  # an admin watches, but never resumes
    assert admin.control("error")["reason"] == "not_resumable" and admin.output == b""
    owner = resume(live_server, http, session_id)
    assert owner.control("resumed")
    owner.ws.close()


def test_a_detached_session_ends_when_its_time_runs_out(live_servers, sshd):
    server = live_servers(TERMINAL_RESUME_SECONDS="2")
    http = server.login()
    first, session_id = open_counting(server, http, sshd)
    first.drop()
    wait_for(lambda: "session.ended" in actions(server, session_id))
    trail = events(server, session_id)
    assert [e.action for e in trail].count("session.ended") == 1
    assert trail[-1].details["reason"] == "disconnected" and "session.detached" in [e.action for e in trail]
    late = resume(server, http, session_id)
    assert late.control("closed")["reason"] == "disconnected"


def test_a_detached_session_ends_at_once_with_its_log_in(live_server, sshd):
    name, password = new_user(live_server)
    http = live_server.login(name, password)
    first, session_id = open_detached(live_server, http, sshd)
    http.post(f"{live_server.url}/logout", headers={"X-CSRFToken": live_server.csrf(http)})
    row = ended_row(live_server, session_id)
    assert row.end_reason == "logged_out"


def test_a_resumed_session_follows_the_log_in_that_resumed_it(live_server, sshd):
    name, password = new_user(live_server)
    old = live_server.login(name, password)
    first, session_id = open_detached(live_server, old, sshd)
    new = live_server.login(name, password)
    again = resume(live_server, new, session_id)
    assert again.control("resumed")
    old.post(f"{live_server.url}/logout", headers={"X-CSRFToken": live_server.csrf(old)})  # the old log-in ends
    interrupt(again)
    again.ws.send(b"echo still-$((20+1))\n")
    again.pump(lambda r: b"still-21" in r.output)
    new.post(f"{live_server.url}/logout", headers={"X-CSRFToken": live_server.csrf(new)})
    again.pump(lambda r: r.control("closed"))
    assert again.control("closed")["reason"] == "logged_out"


def test_the_page_lists_the_users_open_sessions_to_restore(live_server, sshd):
    name, password = new_user(live_server)
    http = live_server.login(name, password)
    first, session_id = open_counting(live_server, http, sshd)
    listed = http.get(f"{live_server.url}/terminals/open", params={"window": "w1"}).json()["sessions"]
    assert [s["session"] for s in listed] == [session_id] and listed[0]["here"] is False
    first.drop()
    wait_for(lambda: "session.detached" in actions(live_server, session_id))
    listed = http.get(f"{live_server.url}/terminals/open").json()["sessions"]
    assert listed[0]["detached"] is True and listed[0]["here"] is False and listed[0]["resume_until"]
    admin = live_server.login()
    row = re.search(rf'<tr id="session-{session_id}">.*?</tr>', admin.get(f"{live_server.url}/terminals/connected").text,
                    re.S).group(0)
    assert re.search(r'class="detached-badge"[^>]*>detached \d+ s, ends in (1 min|\d+ s)', row)  # Connected now
    other, other_password = new_user(live_server)
    assert live_server.login(other, other_password).get(f"{live_server.url}/terminals/open").json()["sessions"] == []
    closed = http.post(f"{live_server.url}/terminals/sessions/{session_id}/close",
                       headers={"X-CSRFToken": live_server.csrf(http)})
    assert closed.status_code == 204
    row = ended_row(live_server, session_id)
    assert row.end_reason == "client_closed"


def test_a_watcher_keeps_watching_across_a_detach_and_one_recording_holds_it_all(live_server, sshd):
    http = live_server.login(*new_user(live_server))
    first, session_id = open_counting(live_server, http, sshd)
    admin = live_server.login()
    watcher = Reader(connect_terminal(f"{live_server.ws_url}/sessions/{session_id}/watch/ws", admin, live_server.url))
    watcher.pump(lambda r: len(numbers(r.output)) > 3)
    first.drop()
    wait_for(lambda: "session.detached" in actions(live_server, session_id))
    mark = numbers(watcher.output)[-1]
    watcher.pump(lambda r: numbers(r.output)[-1] > mark + 20)  # output goes on while nobody is attached
    second = resume(live_server, http, session_id, offset=first.offset)
    interrupt(second)
    second.ws.send(b"echo back-$((50+5))\n")
    watcher.pump(lambda r: b"back-55" in r.output)
    second.ws.send(b"exit\n")
    second.pump(lambda r: r.control("closed"))
    wait_for(lambda: "session.ended" in actions(live_server, session_id))
    trail = events(live_server, session_id)
    assert [e.action for e in trail].count("session.ended") == 1 and trail[-1].details["recording"]["sha256"]
    assert not [e for e in trail if e.action == "session.watch_ended" and e.details["reason"] != "session_ended"]
    cast = http.get(f"{live_server.url}/sessions/{session_id}/recording.cast", timeout=30).text
    assert "n50" in cast and f"n{mark + 20}" in cast and "back-55" in cast  # before, while detached, after


def test_an_admin_ends_a_detached_session_at_once(live_server, sshd):
    http = live_server.login(*new_user(live_server))
    first, session_id = open_detached(live_server, http, sshd)
    admin = live_server.login()
    response = admin.post(f"{live_server.url}/terminals/sessions/{session_id}/terminate",
                          headers={"X-CSRFToken": live_server.csrf(admin)})
    assert response.status_code == 204
    wait_for(lambda: "session.ended" in actions(live_server, session_id))
    assert events(live_server, session_id)[-1].details["reason"] == "terminated"
    late = resume(live_server, http, session_id)
    assert late.control("closed")["reason"] == "terminated"


def test_a_resume_that_is_the_first_request_in_a_while_still_resumes(live_servers, sshd):
    server = live_servers(SESSION_IDLE_SECONDS="30")  # the log-in's activity is written every 2 s
    http = server.login(*new_user(server))
    first, session_id = open_detached(server, http, sshd)
    time.sleep(2.5)  # past the 2 s between activity writes: this resume is the request that writes it
    again = resume(server, http, session_id, offset=first.offset)
    assert again.control("resumed")
    interrupt(again)
    again.ws.send(b"echo alive-$((5*5))\n")
    again.pump(lambda r: b"alive-25" in r.output)
    again.ws.close()


def test_the_kept_output_is_bounded_and_picks_up_at_any_offset_it_holds():
    from app.terminals.attach import OutputLog

    log, sent = OutputLog(10), b""
    for piece in (b"abc\n", b"defgh", b"ij\nklmno", b"p"):
        log.append(piece)
        sent += piece
        assert b"".join(log._chunks) == sent[log.start:] and len(sent) - log.start <= 10 and log.end == len(sent)
    assert log.since(log.end) == b"" and log.since(log.end - 3) == sent[-3:]
    assert log.since(log.start - 1) is None and log.since(log.end + 1) is None  # forgotten, or never sent
    assert log.replay() == (12, b"klmnop")  # from the first line start it holds
