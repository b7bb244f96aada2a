"""Issue 13, item 3: chosen events are pushed to a webhook, signed, retried with back-off, never slowing a request."""
import hashlib
import hmac
import json
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from sqlalchemy import select

from app.audit import alerts
from app.audit.events import plain, record
from app.audit.models import ALERT_TARGET, AuditEvent, AuditOutbox
from app.extensions import db
from app.jobs import table as jobs
from config import ConfigError
from tests.clocks import FakeClock
from tests.support import ROOT, csrf_from, free_port, make_app, fresh_postgres, wait_for

TOKEN = "tok-9f3c2a71d0e84b5c"  # stands for the token a webhook address often carries
SECRET = "whsec-" + "s3cr3t" * 5


@dataclass
class Received:
    """One request the listener got."""

    at: float
    path: str
    headers: dict
    body: bytes
    status: int = 0

    @property
    def event(self):
        """Return the parsed body."""
        return json.loads(self.body)

    @property
    def event_id(self):
        """Return the event id header as a number."""
        return int(self.headers["X-Gatehouse-Event-Id"])


class Listener:
    """A webhook receiver on 127.0.0.1: records each POST and answers what answer(request, n) says (status, delay).

    Each request's time is read from clock: the real one, or the fake one a test's sender runs by.
    """

    def __init__(self, answer=lambda request, n: (200, 0.0), clock=time):
        self.answer, self.requests, self.clock = answer, [], clock
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                """Record the request, then answer as told."""
                got = Received(listener.clock.monotonic(), self.path, dict(self.headers),
                               self.rfile.read(int(self.headers["Content-Length"])))
                listener.requests.append(got)
                got.status, delay = listener.answer(got, len(listener.requests))
                time.sleep(delay)
                self.send_response(got.status)
                if got.status in (301, 302, 307, 308):
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                """Stay quiet: the test reads the requests, not a log."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        """Return the webhook address, with a token in its path and query as real ones often have."""
        return f"http://127.0.0.1:{self.port}/hook/{TOKEN}?key={TOKEN}"

    def delivered(self):
        """Return the requests answered with a 2xx."""
        return [got for got in self.requests if 200 <= got.status < 300]

    def close(self):
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def alert_app(tmp_path, url, **overrides):
    """Return the app with the webhook at url."""
    return make_app(tmp_path, ALERT_WEBHOOK_URL=url, ALERT_WEBHOOK_SECRET=SECRET, **overrides)


def valid_signature(got, secret=SECRET, max_age=300):
    """Check a request as docs/audit.md tells a receiver to: HMAC over "<timestamp>.<body>", timestamp recent."""
    timestamp = got.headers["X-Gatehouse-Timestamp"]
    expected = "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + got.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, got.headers["X-Gatehouse-Signature"]) and \
        abs(time.time() - int(timestamp)) <= max_age


def queued(app):
    """Return the event ids waiting for the webhook, with their attempts and last errors."""
    with app.app_context():
        rows = db.session.execute(select(AuditOutbox.event_id, AuditOutbox.attempts, AuditOutbox.last_error)
                                  .where(AuditOutbox.target == ALERT_TARGET).order_by(AuditOutbox.event_id)).all()
        db.session.remove()
        return [tuple(row) for row in rows]


def lock(name="bob"):
    """Record a lock-out (critical: alerts by default); return its row."""
    return record("auth.locked", f"account {name} locked for 15 minutes after repeated failed log-ins",
                  outcome="failure", actor=name, details={"minutes": 15})


@pytest.fixture
def running():
    """Start the real sender loop of this process for an app, as the jobs driver runs it; stop it after the test."""
    drivers = []

    def run(app, clock=None):
        drivers.append(jobs.start(app, clock=clock, names={"alerts"}))

    yield run
    for driver in drivers:
        driver.stop(join_seconds=5)


# --- (a) an alert arrives, signed, within seconds; the rest does not -------------------------------------------


def test_an_alert_arrives_signed_within_seconds_and_nothing_else_does(tmp_path, listener, running, caplog):
    caplog.set_level("DEBUG")
    app = alert_app(tmp_path, listener.url, PUBLIC_URL="https://gatehouse.example.org:8443")
    running(app)
    with app.app_context():
        record("auth.logout", "bob logged out", actor="bob")  # info: not an alert
        written = time.monotonic()
        row = lock()
        record("auth.login_failed", "failed log in as bob", outcome="failure", actor="bob")  # warning: not by default
    got = wait_for(lambda: listener.delivered(), timeout=5)[0]
    latency = got.at - written
    time.sleep(1.0)  # anything else would have arrived by now
    assert [r.event_id for r in listener.requests] == [row["id"]]
    assert latency < 2.0, latency
    assert valid_signature(got)
    assert got.path == f"/hook/{TOKEN}?key={TOKEN}"
    assert got.headers["Content-Type"] == "application/json"
    body = got.event
    with app.app_context():
        event = db.session.get(AuditEvent, row["id"])
        expected = plain(event)
        assert {key: body[key] for key in expected} == expected
        assert (body["hash"], body["prev_hash"]) == (event.hash, event.prev_hash)
    assert body["action"] == "auth.locked" and body["severity"] == "critical" and body["label"] == "Account locked"
    assert body["host"] == socket.gethostname() and body["details"] == {"minutes": 15}
    since = event.occurred_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert body["link"].startswith(f"https://gatehouse.example.org:8443/audit/?action=auth.locked&since={since}&until=")
    assert queued(app) == []
    print(f"alert write-to-receipt: {latency * 1000:.0f} ms")
    assert_no_secret(app, caplog)


def assert_no_secret(app, caplog):
    """The webhook's token and secret appear in no log line and no audit event."""
    assert caplog.records
    for text in (TOKEN, SECRET):
        assert text not in caplog.text
    with app.app_context():
        for event in db.session.scalars(select(AuditEvent)):
            stored = json.dumps({**plain(event), "hash": event.hash}, default=str)
            assert TOKEN not in stored and SECRET not in stored


def test_without_a_public_url_no_link(tmp_path, listener):
    app = alert_app(tmp_path, listener.url)
    with app.app_context():
        lock()
        alerts.Sender(app).step()
    assert "link" not in listener.delivered()[0].event


# --- (b) which actions alert is configurable --------------------------------------------------------------------


@pytest.mark.parametrize("actions, alerting", [
    (None, {"auth.locked", "user.role_changed"}),  # the default: critical events and chosen ones
    (("auth.login_failed",), {"auth.login_failed"}),
    (("warning",), {"auth.login_failed", "auth.locked", "user.role_changed"}),
    (("critical", "auth.password_changed"), {"auth.locked", "auth.password_changed"}),
])
def test_the_actions_that_alert_are_configurable(tmp_path, listener, actions, alerting):
    app = alert_app(tmp_path, listener.url, **({"ALERT_ACTIONS": actions} if actions else {}))
    with app.app_context():
        ids = {
            "auth.login_failed": record("auth.login_failed", "failed", outcome="failure", actor="bob")["id"],
            "auth.locked": lock()["id"],
            "user.role_changed": record("user.role_changed", "bob made admin", details={"is_admin": True})["id"],
            "auth.password_changed": record("auth.password_changed", "changed", actor="bob")["id"],
            "auth.logout": record("auth.logout", "bye", actor="bob")["id"],
        }
        alerts.Sender(app).step()
    arrived = {got.event["action"] for got in listener.delivered()}
    assert arrived == alerting
    assert sorted(got.event_id for got in listener.requests) == sorted(ids[action] for action in alerting)
    assert all(valid_signature(got) for got in listener.requests)


def test_a_user_created_as_admin_alerts_like_a_role_change(tmp_path, listener):
    app = alert_app(tmp_path, listener.url)
    with app.app_context():
        made = record("user.created", "created user root2", actor="admin",
                      details={"username": "root2", "admin": True})["id"]
        record("user.created", "created user alice", details={"username": "alice", "admin": False})
        alerts.Sender(app).step()
    assert [got.event_id for got in listener.requests] == [made]  # not 1: the first admin, made by the system
    app.config["ALERT_ACTIONS"] = ("critical",)  # without user.role_changed, neither alerts
    with app.app_context():
        record("user.created", "created user root3", actor="admin", details={"username": "root3", "admin": True})
    assert queued(app) == []


def test_an_unknown_action_is_refused_at_start(tmp_path):
    with pytest.raises(ConfigError, match="ALERT_ACTIONS"):
        alert_app(tmp_path, "http://127.0.0.1:9/hook", ALERT_ACTIONS=("auth.lockedd",))


# --- (c) failures: retries with back-off, then delivery once -----------------------------------------------------


def test_a_failing_receiver_gets_retries_with_growing_gaps_then_one_delivery(tmp_path, running, monkeypatch):
    monkeypatch.setattr(alerts, "BACKOFF_MIN", 0.2)
    monkeypatch.setattr(alerts, "POLL_SECONDS", 0.05)  # looks for due rows finely enough to see 0.2 s gaps
    clock = FakeClock(auto=True)  # the sender's waits move it: the back-offs pass without being slept
    receiver = Listener(lambda got, n: (500 if n <= 3 else 200, 0.0), clock=clock)
    try:
        app = alert_app(tmp_path, receiver.url)
        running(app, clock)
        with app.app_context():
            row = lock()
        wait_for(receiver.delivered, timeout=10)
        clock.sleep_until(clock.monotonic() + 1.0)  # a second delivery would show now
        tries = receiver.requests
        assert [got.status for got in tries] == [500, 500, 500, 200]
        assert {got.event_id for got in tries} == {row["id"]}
        assert all(valid_signature(got) for got in tries)  # each try is signed afresh
        gaps = [later.at - earlier.at for earlier, later in zip(tries, tries[1:])]
        # Each try waited at least its back-off, and the back-offs grow (a loaded machine may stretch any gap, so
        # the gaps themselves are not compared with each other).
        assert all(gap >= 0.95 * alerts.backoff(n) for n, gap in enumerate(gaps, 1)), gaps
        assert alerts.backoff(1) < alerts.backoff(2) < alerts.backoff(3)
        assert queued(app) == []
        print("retry gaps: " + ", ".join(f"{gap:.2f} s" for gap in gaps))
    finally:
        receiver.close()


def test_a_failed_try_is_noted_on_its_row_and_waits_its_back_off(tmp_path):
    receiver = Listener(lambda got, n: (500, 0.0))
    try:
        app = alert_app(tmp_path, receiver.url)
        sender = alerts.Sender(app)
        with app.app_context():
            row = lock()
            sender.step()
            assert queued(app) == [(row["id"], 1, "HTTP 500")]
            outbox = db.session.execute(select(AuditOutbox).where(AuditOutbox.target == ALERT_TARGET)).scalar_one()
            wait = (outbox.next_attempt_at - outbox.queued_at).total_seconds()
            assert 0.9 <= wait <= 2.0, wait
            depth, age, error = alerts.queue_status()
            assert depth == 1 and age >= 0 and error == "HTTP 500"
            sender.step()  # not due yet
        assert len(receiver.requests) == 1
        assert [alerts.backoff(n) for n in (1, 2, 3, 9, 10, 30)] == [1, 2, 4, 256, 300, 300]
    finally:
        receiver.close()


def test_one_event_the_receiver_refuses_does_not_hold_back_the_others(tmp_path, monkeypatch):
    monkeypatch.setattr(alerts, "BACKOFF_MIN", 0.1)
    refused = []
    receiver = Listener(lambda got, n: (500 if got.event_id in refused else 200, 0.0))
    try:
        app = alert_app(tmp_path, receiver.url)
        clock = FakeClock()
        sender = alerts.Sender(app, clock)
        with app.app_context():
            first, second, third = lock("a")["id"], lock("b")["id"], lock("c")["id"]
            refused.append(first)
            sender.step()
            assert [got.event_id for got in receiver.requests] == [first, second, third]
            assert [row[0] for row in queued(app)] == [first]
            clock.advance(0.15)
            fourth = lock("d")["id"]
            sender.step()  # the refused one again, then the new one
        assert [got.event_id for got in receiver.requests[3:]] == [first, fourth]
        assert queued(app) == [(first, 2, "HTTP 500")]
    finally:
        receiver.close()


def test_a_receiver_that_is_down_gets_two_tries_per_back_off_and_order_is_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(alerts, "BACKOFF_MIN", 0.5)
    down = [True]
    receiver = Listener(lambda got, n: (503 if down[0] else 204, 0.0))
    try:
        app = alert_app(tmp_path, receiver.url)
        clock = FakeClock()
        sender = alerts.Sender(app, clock)
        with app.app_context():
            ids = [lock(f"user{i}")["id"] for i in range(5)]
            sender.step()
            sender.step()  # paused: nothing is tried
            assert [got.event_id for got in receiver.requests] == ids[:2]
            clock.advance(0.55)
            sender.step()  # the same two, and only them
            assert [got.event_id for got in receiver.requests] == ids[:2] * 2
            down[0] = False
            clock.advance(1.05)
            sender.step()
        assert [got.event_id for got in receiver.delivered()] == ids  # in order once it is back
        assert queued(app) == []
    finally:
        receiver.close()


@pytest.mark.parametrize("how, reason", [("refused", "connection refused"), ("silent", "timed out"),
                                         ("redirect", "HTTP 302")])
def test_failures_are_named_in_a_few_words_never_with_the_address(tmp_path, monkeypatch, caplog, how, reason):
    monkeypatch.setattr(alerts, "TIMEOUT", 0.5)
    receiver = None
    if how == "refused":
        url = f"http://127.0.0.1:{free_port()}/hook/{TOKEN}?key={TOKEN}"
    else:
        receiver = Listener(lambda got, n: (302, 0.0) if how == "redirect" else (200, 1.5))
        url = receiver.url
    try:
        app = alert_app(tmp_path, url)
        with app.app_context():
            row = lock()
            alerts.Sender(app).step()
            assert alerts.queue_status()[2] == reason
        assert queued(app) == [(row["id"], 1, reason)]
        if receiver:
            assert len(receiver.requests) == 1  # a redirect is not followed
        warnings = [r.getMessage() for r in caplog.records if r.name == "gatehouse.alerts"]
        assert any(reason in line and f"event {row['id']}" in line for line in warnings), warnings
        assert_no_secret(app, caplog)
    finally:
        if receiver:
            receiver.close()


# --- (f) give up after a day ---------------------------------------------------------------------------------


def test_an_alert_not_delivered_in_time_is_dropped_and_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(alerts, "GIVE_UP_SECONDS", 1)
    app = alert_app(tmp_path, f"http://127.0.0.1:{free_port()}/hook/{TOKEN}", ALERT_ACTIONS=("warning",))
    clock = FakeClock()
    sender = alerts.Sender(app, clock)
    with app.app_context():
        row = lock()
        sender.step()
        assert queued(app) == [(row["id"], 1, "connection refused")]
        clock.advance(10)  # past GIVE_UP_SECONDS and the lease's renewal, which drops what is too old then
        sender.step()
        dropped = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "alert.dropped")).all()
    assert queued(app) == []  # alert.dropped (a warning here) is not itself queued
    assert len(dropped) == 1
    assert dropped[0].details == {"event_id": row["id"], "event_action": "auth.locked", "attempts": 1,
                                  "last_error": "connection refused"}
    assert f"event {row['id']} (auth.locked)" in dropped[0].message and dropped[0].severity == "warning"


def test_an_alert_whose_event_was_pruned_is_dropped_too(tmp_path, monkeypatch):
    monkeypatch.setattr(alerts, "GIVE_UP_SECONDS", 0)
    app = alert_app(tmp_path, f"http://127.0.0.1:{free_port()}/hook")
    with app.app_context():
        row = lock()
        db.session.execute(AuditEvent.__table__.delete().where(AuditEvent.id == row["id"]))  # as a prune would
        db.session.commit()
        alerts.Sender(app).step()
        dropped = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "alert.dropped")
                                     .order_by(AuditEvent.id.desc()).limit(1)).one()
    assert queued(app) == []
    assert dropped.details["event_id"] == row["id"] and "pruned from the trail" in dropped.message


# --- (d) the request that caused the alert is not slowed -----------------------------------------------------


def test_a_slow_failing_webhook_does_not_slow_log_ins_under_gunicorn(live_servers):
    # A log-in that waited for the webhook would take most of `delay`; one that did not takes a scrypt hash, which on
    # a machine whose CPU is saturated by another process took up to 1.5 s: half the delay tells the two apart.
    delay = 4.5  # under the sender's 5 s read timeout, so the slow answer arrives as HTTP 500
    receiver = Listener(lambda got, n: (500, delay) if n == 1 else (200, 0.0))
    server = live_servers(ALERT_WEBHOOK_URL=receiver.url, ALERT_WEBHOOK_SECRET=SECRET, LOCKOUT_MODE="lock",
                          STORAGE_WARN_FREE_PERCENT="0")
    http = requests.Session()

    def wrong_password():
        """Post one wrong password for admin; return the seconds the POST took."""
        token = csrf_from(http.get(server.url + "/login", timeout=10).text)
        began = time.monotonic()
        response = http.post(server.url + "/login", data={"username": "admin", "password": "wrong-password-1",
                                                          "csrf_token": token}, allow_redirects=False, timeout=10)
        assert response.status_code == 401
        return time.monotonic() - began

    try:
        times = [wrong_password() for _ in range(5)]  # the fifth locks the account: auth.locked, critical
        wait_for(lambda: receiver.requests)  # the webhook now holds the sender for `delay` seconds
        times += [wrong_password() for _ in range(3)]
        assert all(not r.status or r.status == 500 for r in receiver.requests)  # still inside the slow answer
        assert max(times) < delay / 2, times
        wait_for(receiver.delivered)
        log = server.log_text()
    finally:
        server.stop()
        receiver.close()
    tries = receiver.requests
    assert [got.status for got in tries] == [500, 200]
    assert {got.event["action"] for got in tries} == {"auth.locked"}
    assert all(valid_signature(got) for got in tries)
    assert "HTTP 500" in log and TOKEN not in log and SECRET not in log
    print(f"log-in POSTs while the webhook hung for {delay:.1f} s: max {max(times) * 1000:.0f} ms")


# --- (e) two processes on PostgreSQL: one sends -----------------------------------------------------------------


SENDER = """
import sys
from app import create_app
from app.audit import alerts
from app.jobs.table import start
alerts.LEASE_SECONDS, alerts.LEASE_RENEW_SECONDS = 3, 1
app = create_app({"SECRET_KEY": "s" * 40, "SQLALCHEMY_DATABASE_URI": sys.argv[1], "INSTANCE_DIR": sys.argv[2],
                  "ALERT_WEBHOOK_URL": sys.argv[3], "ALERT_WEBHOOK_SECRET": sys.argv[4]})
start(app, names={"alerts"}).join()
"""


def test_two_processes_on_postgresql_send_each_alert_once(tmp_path, listener):
    from app.leases import Lease

    url = fresh_postgres()
    app = alert_app(tmp_path, listener.url, SQLALCHEMY_DATABASE_URI=url)
    procs = [subprocess.Popen([sys.executable, "-c", SENDER, url, str(tmp_path), listener.url, SECRET], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        with app.app_context():
            first = [lock(f"pg{i}")["id"] for i in range(20)]
        # The ceiling covers both processes' start-up (the app's imports), which a busy machine stretches.
        wait_for(lambda: {got.event_id for got in listener.requests} >= set(first), timeout=60)
        time.sleep(1.0)
        assert [got.event_id for got in listener.requests] == first  # one sender: once each, in order
        with app.app_context():
            holder = db.session.get(Lease, "alerts").holder
            db.session.remove()
        sending = next(proc for proc in procs if holder.endswith(f":{proc.pid}"))
        sending.kill()  # the lease runs out and the other process takes it
        sending.wait(timeout=10)
        with app.app_context():
            after = [lock(f"heir{i}")["id"] for i in range(5)]
        wait_for(lambda: {got.event_id for got in listener.requests} >= set(after), timeout=60)
        time.sleep(1.0)
        received = [got.event_id for got in listener.requests]
        assert received == first + after
        assert queued(app) == []
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)
        with app.app_context():
            db.engine.dispose()
