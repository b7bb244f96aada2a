"""Resuming a session another worker holds: under two gevent workers on PostgreSQL, a resume socket that lands on
the worker that does not hold the session is relayed from the holder over the cluster bus (docs/protocol.md,
Resuming). Real sshd, real gunicorn, raw websocket clients and one real Chromium."""
import json
import os
import re
import signal
import time

import pytest
from playwright.sync_api import expect
from simple_websocket import ConnectionClosed

from tests.support import PG_URL, WAIT_SECONDS, connect_terminal, new_user, reset_postgres, wait_for
from tests.test_resume import COUNTER, Reader, events, interrupt, numbers, resume
from tests.test_resume_browser import login, shell_pid

TRIES = 40  # resume sockets opened at most before one lands on the worker that does not hold the session


@pytest.fixture(scope="module")
def two_workers(module_live_servers):
    """The app under gunicorn with two gevent workers on PostgreSQL."""
    return module_live_servers(DATABASE_URL=reset_postgres(PG_URL), WEB_CONCURRENCY="2")


def asked(server, session_id):
    """Return how many resumes of a session a worker relayed from the other so far (its log says it asked)."""
    return len(re.findall(rf"asking \S+ to relay a resume of session {session_id}", server.log_text()))


def count(server, session_id, action):
    """Return how many events of one action a session has in the trail."""
    return [e.action for e in events(server, session_id)].count(action)


def shell_pid_of(reader, word):
    """Type `echo word-$$` through a reader's socket; return the pid the shell prints."""
    mark = len(reader.output)
    reader.ws.send(f"echo {word}-$$\n".encode())
    pattern = rf"{word}-(\d+)\r?\n".encode()
    reader.pump(lambda r: re.search(pattern, r.output[mark:]))
    return re.search(pattern, reader.output[mark:]).group(1)


def echo_ms(reader, times=20):
    """Type single keys and wait for each echo; return the median and the slowest round trip in milliseconds."""
    took = []
    for _ in range(times):
        mark, began = len(reader.output), time.monotonic()
        reader.ws.send(b"x")
        reader.pump(lambda r: b"x" in r.output[mark:])
        took.append((time.monotonic() - began) * 1000)
    reader.ws.send(b"\x15")  # Ctrl+U: the typed keys go
    return sorted(took)[times // 2], max(took)


def open_shell(server, http, sshd):
    """Open a terminal on a new device; return (reader, session id, the shell's pid)."""
    device_id = server.add_device(http, sshd, "relay-" + str(time.monotonic_ns())[-6:])
    reader = Reader(connect_terminal(f"{server.ws_url}/terminals/{device_id}/ws", http, server.url))
    reader.pump(lambda r: r.control("connected"))
    return reader, reader.control("connected")["session"], shell_pid_of(reader, "pid")


def drop_and_wait(server, reader, session_id):
    """Lose a reader's network; return once the holder recorded one more detach."""
    before = count(server, session_id, "session.detached")
    reader.drop()
    wait_for(lambda: count(server, session_id, "session.detached") > before)


def relayed_resume(server, http, session_id, reader, seen):
    """Drop reader and resume from its offset until a resume lands on the worker that does not hold the session;
    return (that reader, all output seen, resume sockets opened). A try that lands on the holder resumes there and
    is dropped again; seen gathers every try's output, which resumes from the offset before it."""
    for tries in range(1, TRIES + 1):
        drop_and_wait(server, reader, session_id)
        before = asked(server, session_id)
        seen += reader.output
        reader = resume(server, http, session_id, offset=reader.offset)
        assert reader.control("resumed"), reader.controls
        if asked(server, session_id) > before:
            return reader, seen, tries
    raise AssertionError(f"{TRIES} resume sockets all reached the worker that holds the session")


def relayed_shell(server, sshd):
    """A new user's shell, resumed through the worker that does not hold it; return (that reader, session id)."""
    http = server.login(*new_user(server))
    first, session_id, _ = open_shell(server, http, sshd)
    second, _, _ = relayed_resume(server, http, session_id, first, b"")
    shell_pid_of(second, "here")
    return second, session_id


def test_a_resume_through_the_other_worker_continues_the_same_shell_without_a_gap(two_workers, sshd):
    server = two_workers
    http = server.login(*new_user(server))
    first, session_id, pid = open_shell(server, http, sshd)
    direct = echo_ms(first)
    first.ws.send(COUNTER)
    first.pump(lambda r: b"n50\r\n" in r.output)
    second, seen, tries = relayed_resume(server, http, session_id, first, b"")
    resumed = second.control("resumed")
    assert resumed["session"] == session_id and not resumed["reset"]
    goal = f"\nn{numbers(seen)[-1] + 60}\r\n".encode()
    second.pump(lambda r: goal in seen + r.output)
    counted = numbers(seen + second.output)
    assert counted == list(range(counted[0], counted[0] + len(counted))), counted  # none lost, none twice
    interrupt(second)
    assert shell_pid_of(second, "again") == pid  # typing reaches the same shell
    second.ws.send(json.dumps({"type": "resize", "cols": 91, "rows": 27}))
    mark = len(second.output)
    second.ws.send(b"stty size\n")
    second.pump(lambda r: b"27 91" in r.output[mark:])  # resizes are forwarded too
    relayed = echo_ms(second)
    print("keystroke echo, median / slowest: direct %.1f / %.1f ms, relayed %.1f / %.1f ms" % (*direct, *relayed))
    back = [e for e in events(server, session_id) if e.action == "session.resumed"]
    assert len(back) == tries  # once per resume: the relayed one is recorded by the worker it reached, not twice
    assert back[-1].source_ip == "127.0.0.1" and back[-1].user_agent == http.headers["User-Agent"]
    assert back[-1].details["taken_over"] is False and back[-1].details["detached_s"] >= 0
    second.ws.close()
    wait_for(lambda: count(server, session_id, "session.ended") == 1)


def test_another_users_resume_is_refused_on_either_worker_and_recorded(two_workers, sshd):
    server = two_workers
    http = server.login(*new_user(server))
    first, session_id, _ = open_shell(server, http, sshd)
    drop_and_wait(server, first, session_id)
    name, password = new_user(server)
    stranger = server.login(name, password)
    for attempt in range(1, 7):  # six sockets: both workers answer (all on one: 1 in 32)
        refused = resume(server, stranger, session_id)
        assert refused.control("error")["reason"] == "not_resumable" and refused.output == b""
        wait_for(lambda: count(server, session_id, "session.resume_refused") == attempt)
    assert asked(server, session_id) == 0  # nothing was asked of the holder
    assert {(e.actor, e.outcome) for e in events(server, session_id) if e.action == "session.resume_refused"} == {
        (name, "failure")}
    assert count(server, session_id, "session.resumed") == 0


def test_a_terminate_closes_the_relayed_socket_with_the_end_message_within_a_second(two_workers, sshd):
    server = two_workers
    second, session_id = relayed_shell(server, sshd)
    admin = server.login()
    token, began = server.csrf(admin), time.monotonic()
    answer = admin.post(f"{server.url}/terminals/sessions/{session_id}/terminate", data={"csrf_token": token},
                        timeout=WAIT_SECONDS)
    assert answer.status_code == 204
    second.pump(lambda r: r.control("closed"))
    took = time.monotonic() - began
    print(f"terminate of a relayed resume: the browser was told after {took:.3f} s")
    assert second.control("closed")["message"].startswith("An admin ended this session")
    assert took < 1.0
    wait_for(lambda: count(server, session_id, "session.ended") == 1)


def test_a_reload_brings_the_tab_back_when_the_other_worker_serves_it(browser, two_workers, sshd):
    server = two_workers
    name, password = new_user(server)
    server.add_device(server.login(name, password), sshd, "blip-box")
    page = browser.new_context().new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    login(page, server.url, name, password)
    page.locator('button.open-terminal[data-device-name="blip-box"]').first.click()
    expect(page.locator("[role=tab]")).to_have_count(1)
    before = shell_pid(page, 0, "before")
    session_id = wait_for(lambda: [e.session_id for e in events_of(server, name, "session.started")])[0]
    for _ in range(TRIES // 2):
        relayed = asked(server, session_id)
        page.reload()
        expect(page.locator("[role=tab]")).to_have_count(1)
        assert shell_pid(page, 0, "after") == before  # the same shell, wherever the reload landed
        if asked(server, session_id) > relayed:
            break
    else:
        raise AssertionError("no reload landed on the worker that does not hold the session")
    page.context.close()


def events_of(server, name, action):
    """Return a user's events of one action."""
    from sqlalchemy import select

    from app.audit.models import AuditEvent
    from tests.test_replay import read_live

    return read_live(server, select(AuditEvent).where(AuditEvent.actor == name, AuditEvent.action == action))


def test_logging_out_the_resuming_log_in_closes_the_relayed_socket(two_workers, sshd):
    server = two_workers
    name, password = new_user(server)
    opener = server.login(name, password)
    first, session_id, _ = open_shell(server, opener, sshd)
    http = server.login(name, password)  # another log-in resumes it: the session follows that one
    second, _, _ = relayed_resume(server, http, session_id, first, b"")
    shell_pid_of(second, "here")
    http.post(f"{server.url}/logout", headers={"X-CSRFToken": server.csrf(http)})
    second.pump(lambda r: r.control("closed"))
    assert second.control("closed")["reason"] == "logged_out"
    wait_for(lambda: [e for e in events(server, session_id) if e.action == "session.ended"
                      and e.details["reason"] == "logged_out"])


def test_input_that_arrives_out_of_order_ends_the_relayed_resume_instead_of_being_typed():
    from app.terminals.resume_holder import INPUT_LOST, RelayedSocket

    socket = RelayedSocket({"id": "r1", "reply": "nobody:1", "session": "s1"})
    socket.take({"kind": "resume-input", "id": "r1", "seq": 1, "items": [["t", '{"type": "ping"}']]})
    assert socket.receive(timeout=0) == '{"type": "ping"}'
    socket.take({"kind": "resume-input", "id": "r1", "seq": 3, "items": [["b", "bHMK"]]})  # 2 was lost
    assert not socket.connected and socket.close_reason == 1006  # detached, kept for the page's next resume
    assert any(INPUT_LOST in frame for frame in socket._outbox if isinstance(frame, str))
    with pytest.raises(ConnectionClosed):
        socket.receive(timeout=0)


def test_output_that_arrives_out_of_order_closes_the_browsers_socket_for_a_resume_from_its_offset():
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from app.terminals.resume_relay import OUTPUT_LOST, RemoteSession

    row = SimpleNamespace(id="s1", worker="nobody:1", user_id=1, detached_at=None, actor="u", target="t",
                          source_ip="127.0.0.1", started_at=datetime.now(timezone.utc))
    remote = RemoteSession(row)
    remote.take({"kind": "resume-data", "id": remote.id, "seq": 1, "items": [["b", "bHMK"]]})
    assert list(remote._out) == [b"ls\n"] and remote.end_code is None
    remote.take({"kind": "resume-data", "id": remote.id, "seq": 3, "items": [["b", "bHMK"]]})  # 2 was lost
    remote.take({"kind": "resume-data", "id": remote.id, "seq": 4, "items": [["b", "bHMK"]]})
    assert remote.end_code == 1011  # not a close the page takes as final: it resumes from the bytes it has
    assert len(remote._out) == 2 and json.loads(remote._out[1]) == {"type": "status", "message": OUTPUT_LOST,
                                                                    "reason": "relay_gap"}


def test_a_holder_that_dies_ends_the_relayed_socket_with_a_restarts_words(two_workers, sshd):
    server = two_workers
    second, session_id = relayed_shell(server, sshd)
    pid = int(row_worker(server, session_id).rsplit(":", 1)[1])
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)  # a worker of the server this module started; gunicorn starts another
    second.pump(lambda r: r.control("closed"), timeout=WAIT_SECONDS + 15)
    assert second.control("closed") == {"type": "closed", "message": "The server is restarting.",
                                        "reason": "server_restart"}


def row_worker(server, session_id):
    """Return the name (node:pid) of the process holding a session."""
    from sqlalchemy import select

    from app.terminals.models import TerminalSession
    from tests.test_replay import read_live

    return read_live(server, select(TerminalSession).where(TerminalSession.id == session_id))[0].worker


def test_on_sqlite_with_two_workers_the_other_worker_says_elsewhere(live_servers, sshd):
    server = live_servers(WEB_CONCURRENCY="2")  # SQLite: the bus does not cross processes
    http = server.login(*new_user(server))
    reader, session_id, _ = open_shell(server, http, sshd)
    for _ in range(TRIES):
        drop_and_wait(server, reader, session_id)
        reader = resume(server, http, session_id, offset=reader.offset)
        refused = reader.control("error")
        if refused:
            assert refused["reason"] == "elsewhere" and "cannot reach" in refused["message"]
            assert reader.output == b"" and asked(server, session_id) == 0
            break
        assert reader.control("resumed")  # it reached the holder: resumed there
    else:
        raise AssertionError(f"{TRIES} resume sockets all reached the worker that holds the session")
