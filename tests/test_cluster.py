"""The cluster bus: a message published in one process reaches the others through PostgreSQL's LISTEN/NOTIFY (and
after its listener was cut off, once it reconnected), in-process on SQLite; and under two gevent workers on
PostgreSQL, a watch that lands on the worker that does not hold the session is relayed from the holder, and a
terminate asked outside the holder ends the session at once."""
import base64
import contextlib
import json
import queue
import re
import subprocess
import sys
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from app import cluster
from app.cluster import Bus, PayloadTooLarge
from app.extensions import db
from app.session_ends import request_end
from app.terminals.models import TerminalSession
from tests.support import (PG_URL, ROOT, WAIT_SECONDS, closed_within, connect_terminal, console, live_events,
                           open_user_session, read_until, reset_postgres, server_app, wait_for)

PASSWORD = "watcher-password-long"


@contextlib.contextmanager
def stepping(bus):
    """Step a started bus on a thread of its own (as the job "cluster" does) until the block ends; then stop it."""
    done = threading.Event()

    def loop():
        while not done.is_set():
            if not bus.step():
                done.wait(0.05)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield bus
    finally:
        done.set()
        thread.join(WAIT_SECONDS)
        bus.stop()


def receiver(bus, channel):
    """Subscribe a queue to a channel of bus; return the queue."""
    got = queue.Queue()
    bus.subscribe(channel, got.put)
    return got


@pytest.fixture
def pg_url():
    """This worker's PostgreSQL database (the bus needs no tables), or a skip (a failure in CI) without a server."""
    return reset_postgres(PG_URL)


def test_a_message_published_in_another_process_reaches_this_one(pg_url):
    channel = "test-" + uuid.uuid4().hex[:8]
    bus = Bus().start(pg_url, name="here:1")
    got = receiver(bus, channel)
    with stepping(bus):
        assert bus.connected.wait(WAIT_SECONDS)
        script = ("import sys; from app.cluster import Bus; bus = Bus().start(sys.argv[1], 'there:2'); "
                  "sys.exit(0 if bus.publish(sys.argv[2], {'text': 'héllo', 'n': 1}) else 1)")
        subprocess.run([sys.executable, "-c", script, pg_url, channel], cwd=ROOT, check=True, timeout=2 * WAIT_SECONDS)
        assert got.get(timeout=WAIT_SECONDS) == {"text": "héllo", "n": 1}


def test_two_connections_publish_and_listen_and_an_inbox_reaches_one_process(pg_url):
    channel = "test-" + uuid.uuid4().hex[:8]
    here, there = Bus().start(pg_url, name="node-a:1"), Bus().start(pg_url, name="node-b:2")
    got_here, got_there = receiver(here, channel), receiver(there, channel)
    inbox_here, inbox_there = receiver(here, cluster.INBOX), receiver(there, cluster.INBOX)
    with stepping(here), stepping(there):
        assert here.connected.wait(WAIT_SECONDS) and there.connected.wait(WAIT_SECONDS)
        assert there.publish(channel, {"ids": ["a", "b"]})
        assert got_here.get(timeout=WAIT_SECONDS) == {"ids": ["a", "b"]}
        assert got_there.get(timeout=WAIT_SECONDS) == {"ids": ["a", "b"]}  # the publisher's own process too
        assert here.publish(cluster.inbox_of("node-b:2"), {"kind": "hello"})
        assert inbox_there.get(timeout=WAIT_SECONDS) == {"kind": "hello"}
        here.publish(cluster.inbox_of("node-a:1"), {"kind": "mine"})
        assert inbox_here.get(timeout=WAIT_SECONDS) == {"kind": "mine"}  # the first message it got is its own
        assert inbox_there.empty()


def test_the_listener_reconnects_after_its_connection_is_ended(pg_url):
    channel = "test-" + uuid.uuid4().hex[:8]
    bus, other = Bus().start(pg_url, name="here:1"), Bus().start(pg_url, name="there:2")
    got = receiver(bus, channel)
    with stepping(bus):
        assert bus.connected.wait(WAIT_SECONDS)
        first = bus.listener_pid
        engine = sa.create_engine(pg_url)
        try:
            with engine.begin() as conn:
                assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar()
        finally:
            engine.dispose()
        wait_for(lambda: bus.connections == 2 and bus.connected.is_set())
        assert bus.listener_pid != first
        assert other.publish(channel, {"after": "reconnect"})
        assert got.get(timeout=WAIT_SECONDS) == {"after": "reconnect"}
    other.stop()


def test_a_payload_too_large_for_one_notify_is_refused_before_it_is_sent(pg_url):
    bus = Bus().start(pg_url, name="here:1")
    try:
        with pytest.raises(PayloadTooLarge):
            bus.publish("test", {"text": "x" * 8000})
        assert bus.publish("test", {"text": "x" * 7900})  # just under the limit goes out
    finally:
        bus.stop()


def test_on_sqlite_messages_stay_in_the_process(tmp_path):
    bus = Bus()
    assert not bus.publish("anything", {"n": 1})  # not started: nothing goes out, nothing fails
    bus.start(f"sqlite:///{tmp_path / 'one.db'}", name="solo:1")
    got, inbox = receiver(bus, "things"), receiver(bus, cluster.INBOX)
    with stepping(bus):
        assert bus.publish("things", {"n": 2})
        assert got.get(timeout=WAIT_SECONDS) == {"n": 2}
        bus.publish(cluster.inbox_of("solo:1"), {"kind": "me"})
        bus.publish(cluster.inbox_of("other:2"), {"kind": "not me"})  # no other process is reached on SQLite
        assert inbox.get(timeout=WAIT_SECONDS) == {"kind": "me"}
        assert bus.reaches("solo:1") and not bus.reaches("other:2")
        time.sleep(0.2)  # a message to another process would have come by now (the queue is this process's)
        assert inbox.empty()
    assert not bus.publish("things", {"n": 3})  # stopped


def test_relayed_watch_output_is_cut_into_messages_that_each_fit_one_notify():
    from app.terminals.relay import _messages
    from app.terminals.watching import Watcher

    watcher = Watcher("w")
    watcher.start(['{"type":"size","cols":80,"rows":24}', b"\x1b[H\x1b[2Jscreen"])
    output = bytes(range(256)) * 400  # 100 KiB of every byte value
    for piece in (output[:70000], output[70000:]):
        watcher.output(piece)
    watcher.control("size", cols=100, rows=30)
    got, texts = b"", []
    while items := watcher.take(7000):
        for message in _messages(items):
            cluster.encode({"kind": "watch-data", "id": uuid.uuid4().hex, "seq": 123456, "items": message})  # fits
            for kind, value in message:
                if kind == "b":
                    got += base64.b64decode(value)
                else:
                    texts.append(value)
    assert got == b"\x1b[H\x1b[2Jscreen" + output
    assert texts == ['{"type":"size","cols":80,"rows":24}', '{"type": "size", "cols": 100, "rows": 30}']


def test_on_sqlite_a_terminate_reaches_the_terminal_in_process_at_once(live_server, sshd):
    terminal, session_id = open_user_session(live_server, sshd, "cluster-")
    terminal.send(b"echo up-$((9*9))\n")
    read_until(terminal, b"up-81")
    admin = live_server.login()
    token, began = live_server.csrf(admin), time.monotonic()
    answer = admin.post(f"{live_server.url}/terminals/sessions/{session_id}/terminate", data={"csrf_token": token},
                        timeout=WAIT_SECONDS)
    assert answer.status_code == 204  # the flag is written and the bus told
    answered = time.monotonic() - began
    took = answered + closed_within(terminal, WAIT_SECONDS)
    print(f"terminate on SQLite, one process: answered after {answered:.3f} s, closed after {took:.3f} s")
    assert took - answered < 1.0


# Two gevent workers on PostgreSQL: the watch socket and the terminate may reach either.

@pytest.fixture(scope="module")
def two_workers(module_live_servers):
    """The app under gunicorn with two gevent workers on PostgreSQL."""
    return module_live_servers(DATABASE_URL=reset_postgres(PG_URL), WEB_CONCURRENCY="2")


def relayed_watch(server, http, session_id):
    """Open watch sockets until one lands on the worker that does not hold the session (its log says it asked the
    holder); return it, its first frames already read up to the screen."""
    asked = re.compile(rf"asking \S+ to relay a watch of session {session_id}")
    for _ in range(40):
        before = len(asked.findall(server.log_text()))
        ws = connect_terminal(f"{server.ws_url}/sessions/{session_id}/watch/ws", http, server.url)
        first = ws.receive(timeout=WAIT_SECONDS)
        assert isinstance(first, str) and json.loads(first)["type"] == "size", first
        if len(asked.findall(server.log_text())) > before:
            return ws
        ws.close()
    raise AssertionError("forty watch sockets all reached the worker that holds the session")


def test_a_watch_on_the_other_worker_is_relayed_from_the_holder(two_workers, sshd):
    server = two_workers
    terminal, session_id = open_user_session(server, sshd, "cluster-")
    watcher = "w-" + uuid.uuid4().hex[:8]
    console(server, "users", "create", watcher, "--admin", "--password", PASSWORD, "--no-must-change")
    http = server.login(watcher, PASSWORD)
    try:
        terminal.send(b"echo before-$((2*4))\n")
        read_until(terminal, b"before-8")
        watching = relayed_watch(server, http, session_id)
        read_until(watching, b"before-8")  # the first screen, drawn by the holder
        terminal.send(b"echo live-$((3*5)); seq 1 3000 | tail -c 20000 | base64 -w0; echo; echo done-$((4*4))\n")
        seen = read_until(watching, b"done-16")  # live output, several NOTIFY messages long
        assert b"live-15" in seen
        started = [e for e in live_events(server, "session.watch_started") if e.session_id == session_id]
        assert [(e.actor, e.source_ip, e.details["by"]) for e in started][-1] == (watcher, "127.0.0.1", watcher)
        watching.close()
        # Each watch, relayed or not (the tries that reached the holder), records its end once, when its page left.
        ended = wait_for(lambda: len(found := [e for e in live_events(server, "session.watch_ended")
                                               if e.session_id == session_id]) == len(started) and found)
        assert {(e.actor, e.details["reason"]) for e in ended} == {(watcher, "left")}
    finally:
        terminal.close()


def terminate_outside(server, session_id):
    """Ask for a session's end from this process, which is neither worker: the flag, then the cluster message (an
    admin's terminate does this first, then records session.terminated)."""
    with server_app(server).app_context():
        assert request_end("terminated", TerminalSession.id == session_id) == [session_id]
        db.engine.dispose()


def test_a_terminate_asked_outside_the_holder_ends_the_session_in_under_a_second(two_workers, sshd):
    server = two_workers
    cluster.bus.start(server.database_url, name="test-process:1")  # this process publishes as a third process
    try:
        terminal, session_id = open_user_session(server, sshd, "cluster-")
        terminal.send(b"echo up-$((5*5))\n")
        read_until(terminal, b"up-25")
        began = time.monotonic()
        terminate_outside(server, session_id)
        asked = time.monotonic() - began
        took = asked + closed_within(terminal, WAIT_SECONDS)
        print(f"terminate: flag written and told in {asked:.3f} s, session closed after {took:.3f} s")
        assert took < 1.0
        wait_for(lambda: [e for e in live_events(server, "session.ended") if e.session_id == session_id
                          and e.details["reason"] == "terminated"])
    finally:
        cluster.bus.stop()
