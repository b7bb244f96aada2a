"""The audit trail with real parts: orphan sessions, pruning at start-up, two nginx hops."""
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from datetime import timedelta

import flask_migrate
import pytest
import requests
import sqlalchemy as sa
from sqlalchemy import select

from app import create_app
from app.audit import events
from app.audit.events import record
from app.audit.models import AuditEvent
from app.dbtypes import iso_utc, now_utc
from app.extensions import db
from app.leases import worker_id
from app.terminals import live, orphans, registry, session_events
from app.terminals.models import TerminalSession
from tests.support import (ADMIN_PASSWORD, NGINX_CONF, SECRET_KEY, WAIT_SECONDS, LiveServer, SourceAddressAdapter,
                           csrf_from, free_port, missing, open_terminal, server_app, start_nginx, wait_for_port)

HOST = __import__("socket").gethostname()


def dead_pid():
    """Return the pid of a process that has just exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def open_session(app, worker, heartbeat_age):
    """Insert an open terminal session held by worker, last seen heartbeat_age ago."""
    with app.app_context():
        row = TerminalSession(id=str(uuid.uuid4()), user_id=None, actor="admin", target="web1 (127.0.0.1:22)",
                              source_ip="127.0.0.1", worker=worker, started_at=now_utc() - timedelta(hours=1),
                              heartbeat_at=now_utc() - heartbeat_age, bytes_in=10, bytes_out=2000)
        db.session.add(row)
        db.session.commit()
        return row.id


def test_orphans_closed_after_a_crash_but_not_while_their_worker_lives(app):
    fresh, stale = timedelta(seconds=1), timedelta(minutes=5)
    crashed = open_session(app, f"{HOST}:{dead_pid()}", fresh)
    alive_here = open_session(app, f"{HOST}:{os.getppid()}", stale)  # its process lives: never touched
    other_node_alive = open_session(app, "node-b:4242", fresh)
    other_node_gone = open_session(app, "node-c:4242", stale)
    with app.app_context():
        assert orphans.sweep_orphans(timedelta(seconds=30)) == 2
        assert orphans.sweep_orphans(timedelta(seconds=30)) == 0  # closing happens once
        state = {row.id: (row.ended_at is not None, row.end_reason) for row in db.session.scalars(select(TerminalSession))}
        ended = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "session.ended")).all()
    assert state[crashed] == (True, "server_restart")
    assert state[other_node_gone] == (True, "lost")
    assert state[alive_here] == (False, None) and state[other_node_alive] == (False, None)
    assert sorted((e.session_id, e.details["reason"]) for e in ended) == sorted(
        [(crashed, "server_restart"), (other_node_gone, "lost")])
    assert all(e.message == "stopped session with web1 (127.0.0.1:22)" and e.details["bytes_out"] == 2000
               for e in ended)


def test_live_server_sweeps_orphans_and_prunes_at_start_up(tmp_path, live_servers):
    """A server starting on a database left by a crash closes its orphans and prunes expired events."""
    database = f"sqlite:///{tmp_path / 'live.db'}"
    app = create_app({"SECRET_KEY": SECRET_KEY, "SQLALCHEMY_DATABASE_URI": database, "INSTANCE_DIR": str(tmp_path)})
    with app.app_context():
        flask_migrate.upgrade()
        old = (now_utc() - timedelta(days=30)).replace(hour=12, minute=0)  # one day's file, whatever the hour
        for i in range(5):
            events.now_utc, saved = (lambda i=i: old + timedelta(minutes=i)), events.now_utc
            try:
                record("auth.login_failed", f"failed log in as old{i}", outcome="failure", actor=f"old{i}")
            finally:
                events.now_utc = saved
        db.engine.dispose()
    orphan = open_session(app, f"{HOST}:{dead_pid()}", timedelta(seconds=1))
    server = live_servers(workdir=tmp_path, DATABASE_URL=database, AUDIT_ARCHIVE_DIR=str(tmp_path / "archive"))
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        with app.app_context():
            actions = db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
            session_row = db.session.get(TerminalSession, orphan)
            db.session.remove()
        if "audit.pruned" in actions and session_row.ended_at is not None:
            break
        time.sleep(0.2)
    server.stop()  # before the checks: nothing writes to the trail while it is verified
    assert "auth.login_failed" not in actions  # the five 30-day-old events are gone
    assert actions.count("audit.pruned") == 1 and "session.ended" in actions and "user.created" in actions
    assert session_row.end_reason == "server_restart"
    assert len(list((tmp_path / "archive").glob("audit-*.jsonl.gz"))) == 1
    result = subprocess.run([".venv/bin/flask", "--app", "app", "audit", "verify"], capture_output=True, text=True,
                            env={**server.environment()}, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0 and result.stdout.startswith("OK: "), result.stdout + result.stderr


SERVERS = """
  server {{
    listen 127.0.0.1:{outer};
    location / {{ proxy_pass http://127.0.0.1:{inner}; proxy_bind 127.0.0.2; {common} }}
  }}
  server {{
    listen 127.0.0.1:{inner};
    location / {{ proxy_pass http://127.0.0.1:{app}; proxy_bind 127.0.0.3; {common} }}
  }}"""
COMMON = ("proxy_http_version 1.1; proxy_set_header Host $http_host; "
          "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto $scheme; "
          "proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade;")


@pytest.fixture(scope="module")
def behind_two_nginx(tmp_path_factory, module_live_servers):
    """The app with TRUSTED_PROXY_HOPS=2 behind two real nginx, each hop on its own loopback address."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        missing("nginx (apt-get install nginx)")
    workdir = tmp_path_factory.mktemp("nginx")
    server = module_live_servers(workdir=workdir / "app", TRUSTED_PROXY_HOPS="2")

    def write_conf():
        outer, inner = free_port(), free_port()
        (workdir / "nginx.conf").write_text(NGINX_CONF.format(dir=workdir, servers=SERVERS.format(
            outer=outer, inner=inner, app=server.port, common=COMMON)))
        return outer

    proc, outer = start_nginx(workdir, write_conf)
    wait_for_port(outer, proc=proc)
    yield server, f"http://127.0.0.1:{outer}"
    proc.terminate()
    proc.wait(10)


def test_two_nginx_hops_give_the_real_client_address(behind_two_nginx):
    server, url = behind_two_nginx
    http = requests.Session()
    http.mount("http://", SourceAddressAdapter("127.0.0.5"))
    # The client tries to choose its own address; the two trusted hops make that impossible.
    http.headers["X-Forwarded-For"] = "6.6.6.6"
    token = csrf_from(http.get(url + "/login", timeout=10).text)
    response = http.post(url + "/login", data={"username": "admin", "password": "wrong-password",
                                               "csrf_token": token}, timeout=10)
    assert response.status_code == 401
    app = server_app(server)
    with app.app_context():
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.login_failed")
                                   .order_by(AuditEvent.id.desc())).first()
        db.engine.dispose()
    assert event.source_ip == "127.0.0.5"


# --- terminal sessions in the trail ----------------------------------------------------------------

def trail(server, since=0):
    """Return the audit events of a live server after id since."""
    app = server_app(server)
    with app.app_context():
        found = db.session.scalars(select(AuditEvent).where(AuditEvent.id > since).order_by(AuditEvent.id)).all()
        db.session.expunge_all()
        db.engine.dispose()
    return found


def wait_for_action(server, action, since=0, timeout=WAIT_SECONDS):
    """Poll the trail until an event with action appears; return the trail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events_now = trail(server, since)
        if any(e.action == action for e in events_now):
            return events_now
        time.sleep(0.1)
    return trail(server, since)


def test_day_behind_two_nginx_leaves_exactly_the_expected_rows(behind_two_nginx, sshd, monkeypatch):
    """Log in, connect, close the tab, change the password, log out: the rows, each with the real IP."""
    server, url = behind_two_nginx
    since = trail(server)[-1].id
    http = requests.Session()
    http.mount("http://", SourceAddressAdapter("127.0.0.5"))
    http.headers.update({"X-Forwarded-For": "6.6.6.6", "User-Agent": "compliance-check/1.0"})
    token = csrf_from(http.get(url + "/login", timeout=10).text)
    http.post(url + "/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token}, timeout=10)
    proxied = LiveServer(server.workdir, port=int(url.rsplit(":", 1)[1]))  # the same app, seen through nginx
    device_id = proxied.add_device(http, sshd, "web-proxied")
    ws = open_terminal(f"ws://127.0.0.1:{proxied.port}/terminals/{device_id}/ws", http, url, monkeypatch, "127.0.0.5")
    ws.close()  # the tab's close button
    wait_for_action(server, "session.ended", since)
    token = csrf_from(http.get(url + "/account/password", timeout=10).text)
    http.post(url + "/account/password", data={"current": ADMIN_PASSWORD, "new": "new-" + ADMIN_PASSWORD,
                                               "confirm": "new-" + ADMIN_PASSWORD, "csrf_token": token}, timeout=10)
    http.post(url + "/logout", data={"csrf_token": csrf_from(http.get(url + "/", timeout=10).text)}, timeout=10)
    rows = trail(server, since)
    target = f"web-proxied (127.0.0.1:{sshd.port})"
    assert [e.action for e in rows] == ["auth.login", "device.created", "hostkey.trusted", "session.started",
                                        "session.ended", "auth.password_changed", "auth.session_revoked",
                                        "auth.logout"]  # the change gives a new token: the old log-in is revoked
    assert {e.source_ip for e in rows} == {"127.0.0.5"}
    assert {e.actor for e in rows} == {"admin"} and {e.user_agent for e in rows} == {"compliance-check/1.0"}
    started, ended = rows[3], rows[4]
    assert started.message == f"started session with {target}" and started.target == target
    assert ended.message == f"stopped session with {target}" and ended.session_id == started.session_id
    assert ended.details["reason"] == "client_closed" and ended.details["bytes_out"] > 0
    assert (ended.occurred_at - started.occurred_at).total_seconds() < 10


def test_server_shutdown_ends_sessions_and_a_crash_is_closed_on_restart(live_servers, sshd):
    server = live_servers()
    http = server.login()
    device_id = server.add_device(http, sshd, "web-restart")
    ws_url = f"{server.ws_url}/terminals/{device_id}/ws"
    first = open_terminal(ws_url, http, server.url)
    server.stop()  # SIGTERM: a clean shutdown
    ended = [e for e in trail(server) if e.action == "session.ended"]
    assert [e.details["reason"] for e in ended] == ["server_restart"]
    assert not first.connected  # the server closed the terminal on its way down

    server.start()
    http = server.login()
    open_terminal(ws_url, http, server.url)  # left open: the crash must leave it without an end
    server.stop(signal.SIGKILL)  # a crash: nothing gets to write session.ended
    crashed = [e for e in trail(server) if e.action == "session.started"][-1]
    assert not [e for e in trail(server) if e.action == "session.ended" and e.session_id == crashed.session_id]
    server.start()  # the new process finds the session of the dead one and closes it
    events_now = wait_for_action(server, "session.ended", since=crashed.id)
    closed = [e for e in events_now if e.action == "session.ended"]
    assert [(e.session_id, e.details["reason"]) for e in closed] == [(crashed.session_id, "server_restart")]


class FakeBridge:
    """The parts of a bridge the live registry reads."""

    bytes_in, bytes_out, reason = 5, 50, None

    def close(self, reason):
        self.reason = self.reason or reason


def held_terminal(app, login_expires=None):
    """Return a LiveTerminal this process holds, on an open session row, with a fake bridge."""
    session_id = open_session(app, worker_id(), timedelta(0))
    terminal = live.LiveTerminal(None, None, None, "127.0.0.1", None, {"TERMINAL_RESUME_SECONDS": 0, "TERMINAL_RESUME_BUFFER_KB": 64})
    terminal.metadata = session_events.SessionMetadata(session_id, None, "admin", "web1 (127.0.0.1:22)", "127.0.0.1",
                                                       now_utc())
    terminal.bridge, terminal.login_expires = FakeBridge(), login_expires
    registry.hold(terminal)
    return terminal


def test_watch_ends_sessions_flagged_elsewhere(app):
    """An end asked on another worker or node (a flag on the row) reaches the holder within a tick."""
    terminal = held_terminal(app)
    with app.app_context():
        try:
            assert registry.end_requested() == 0 and registry.heartbeat() == 1 and terminal.bridge.reason is None
            with db.engine.begin() as conn:
                conn.execute(TerminalSession.__table__.update().values(terminate_requested=True,
                                                                      terminate_reason="logged_out"))
            registry.end_requested()
            assert terminal.bridge.reason == "logged_out"
            assert db.session.get(TerminalSession, terminal.metadata.id).bytes_out == 50
        finally:
            registry.release(terminal)


def test_watch_ends_sessions_whose_log_in_expired(app):
    terminal = held_terminal(app, login_expires=now_utc() + timedelta(seconds=1))
    with app.app_context():
        try:
            registry.end_requested()
            assert terminal.bridge.reason is None
            terminal.login_expires = now_utc() - timedelta(seconds=1)
            registry.end_requested()
            assert terminal.bridge.reason == "login_expired"
        finally:
            registry.release(terminal)


def test_an_end_that_cannot_be_written_is_retried_with_its_real_time(app, monkeypatch):
    terminal = held_terminal(app)
    with app.app_context():
        real = events.record
        monkeypatch.setattr(session_events, "record",
                            lambda *a, **k: (_ for _ in ()).throw(events.AuditWriteError("disk full")))
        terminal.close("client_closed")
        assert registry.retry_unwritten() == 0  # still failing: kept
        monkeypatch.setattr(session_events, "record", real)
        assert registry.retry_unwritten() == 1 and registry.retry_unwritten() == 0
        row = db.session.get(TerminalSession, terminal.metadata.id)
        ended = db.session.scalars(select(AuditEvent).where(AuditEvent.session_id == row.id)).one()
    assert row.end_reason == "client_closed" and ended.details["ended_at"] == iso_utc(row.ended_at)
    assert ended.occurred_at > row.ended_at  # written later, stamped with when it really ended


def test_terminal_refused_when_the_audit_trail_cannot_be_written(tmp_path, live_servers, sshd):
    """Trusting a new host key and starting a session fail closed when the trail cannot be written."""
    import simple_websocket

    from app.devices.models import HostKey
    from tests.support import connect_terminal

    server = live_servers(workdir=tmp_path)
    app = create_app({"SECRET_KEY": SECRET_KEY, "SQLALCHEMY_DATABASE_URI": server.database_url,
                      "INSTANCE_DIR": str(tmp_path)})

    def audit(working):
        with app.app_context(), db.engine.begin() as conn:
            if working:
                conn.execute(sa.text("INSERT INTO audit_chain_head (id, last_id, last_hash) "
                                     "SELECT 1, id, hash FROM audit_events ORDER BY id DESC LIMIT 1"))
            else:
                conn.execute(sa.text("DELETE FROM audit_chain_head"))  # every audit write fails

    def attempt(url):
        ws, messages = connect_terminal(url, http, server.url), []
        try:
            while (frame := ws.receive(timeout=WAIT_SECONDS)) is not None:
                messages.append(frame)
        except simple_websocket.ConnectionClosed:
            pass
        assert not any(isinstance(m, bytes) for m in messages)  # not one byte of a shell
        return json.loads(messages[-1])

    def count(model):
        with app.app_context():
            return len(db.session.scalars(select(model)).all())

    try:
        http = server.login()
        url = f"{server.ws_url}/terminals/{server.add_device(http, sshd, 'no-audit')}/ws"
        audit(False)
        refused = attempt(url)
        assert refused["reason"] == "audit" and "cannot be written" in refused["message"]
        assert count(HostKey) == 0  # a key nobody could audit is not trusted
        audit(True)
        open_terminal(url, http, server.url).close()
        assert count(HostKey) == 1 and count(TerminalSession) == 1
        audit(False)
        assert attempt(url)["reason"] == "audit"
        assert count(TerminalSession) == 1  # no session row left behind
        log = server.log_text()
        assert "audit write failed: action=hostkey.trusted" in log and "action=session.started" in log
    finally:
        with app.app_context():
            db.engine.dispose()
