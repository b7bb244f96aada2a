"""Failed log-ins throttled by address and by name (issue 14, item 3): blocks, waits, lock mode, admins, two nodes."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select, update

from app.audit.models import AuditEvent
from app.auth import throttle
from app.auth.models import LoginThrottle, User
from app.dbtypes import now_utc
from app.extensions import db
from config import Config, ConfigError
from tests.support import (ADMIN_PASSWORD, PG_URL, AuthActions, browser_login, csrf_from, make_app,
                           new_user, reset_postgres, server_app)

BOB = "bob-password-long"


@pytest.fixture
def proxied(tmp_path):
    """The app behind one trusted proxy, so each test request can come from its own address."""
    app = make_app(tmp_path, TRUSTED_PROXY_HOPS=1)
    with app.app_context():
        from app.auth.accounts import create_user

        create_user("bob", BOB, via="console")
    yield app
    with app.app_context():
        db.engine.dispose()


def attempt(app, username, password, address):
    """Log in once from a fresh browser at address; return the response."""
    client = app.test_client()
    return AuthActions(client).login(username, password, headers={"X-Forwarded-For": address})


def count(app, action):
    """Return how many events of action the trail holds."""
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action))


def body(response):
    """Return the page text with the form's per-request token and the typed name taken out."""
    import re

    text = response.get_data(as_text=True)
    return re.sub(r'(value|content)="[^"]*"', "", text)


def test_an_address_is_blocked_after_its_failures_with_one_answer_for_every_name(proxied):
    for i in range(20):  # existing and unknown names alike count against the address
        assert attempt(proxied, "bob" if i % 5 == 0 else f"nobody{i}", "wrong-password", "10.1.1.1").status_code == 401
    right = attempt(proxied, "bob", BOB, "10.1.1.1")  # even the right password is refused now
    unknown = attempt(proxied, "nobody", "whatever-password", "10.1.1.1")
    assert right.status_code == unknown.status_code == 429
    assert right.headers["Retry-After"] == unknown.headers["Retry-After"]
    assert body(right) == body(unknown)
    assert "Too many failed log-ins from your address. Try again in 15 minutes." in body(right)
    assert BOB not in right.get_data(as_text=True)
    for _ in range(30):
        assert attempt(proxied, "bob", BOB, "10.1.1.1").status_code == 429
    assert attempt(proxied, "bob", BOB, "10.1.1.2").status_code == 302  # another address is not affected
    assert count(proxied, "auth.address_blocked") == 1  # audited once, not per refused attempt
    assert count(proxied, "auth.login_failed") == 20
    with proxied.app_context():
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.address_blocked")).one()
        row = db.session.get(LoginThrottle, ("ip", "10.1.1.1"))
    assert event.details == {"address": "10.1.1.1", "failures": 20, "minutes": 15, "window_minutes": 15}
    assert event.severity == "warning" and row.refused == 32


def test_an_ipv6_address_counts_with_its_slash_64():
    assert throttle.address_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert throttle.address_key("::ffff:10.0.0.7") == "10.0.0.7"
    assert throttle.address_key("10.0.0.7") == "10.0.0.7"
    assert throttle.address_key("not an address") == "unknown"


def test_one_slash_64_is_one_address(proxied):
    for i in range(20):
        attempt(proxied, f"nobody{i}", "wrong-password", f"2001:db8:5:6::{i + 1:x}")
    assert attempt(proxied, "bob", BOB, "2001:db8:5:6:ffff::9").status_code == 429
    assert attempt(proxied, "bob", BOB, "2001:db8:5:7::1").status_code == 302


def test_a_name_attacked_from_many_addresses_waits_rather_than_locks(proxied):
    for i in range(5):  # LOGIN_MAX_FAILURES=5 failures, each from another address
        assert attempt(proxied, "bob", "wrong-password", f"10.2.0.{i + 1}").status_code == 401
    refused = attempt(proxied, "bob", BOB, "10.3.0.1")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert "Too many failed log-ins for this name. Try again in 1 second." in body(refused)
    unknown = [attempt(proxied, "carol", "wrong-password", f"10.4.0.{i + 1}") for i in range(6)]
    assert body(unknown[-1]).replace("carol", "bob") == body(refused)  # an unknown name waits the same way
    time.sleep(1.1)
    assert attempt(proxied, "bob", BOB, "10.3.0.1").status_code == 302  # the real user gets in after the wait
    with proxied.app_context():
        user = db.session.scalar(select(User).where(User.username == "bob"))
        assert user.locked_until is None and db.session.get(LoginThrottle, ("account", "bob")) is None
        reasons = db.session.scalars(select(AuditEvent.details).where(AuditEvent.action == "auth.login_failed",
                                                                      AuditEvent.actor == "bob")).all()
    assert [r["reason"] for r in reasons] == ["wrong_password"] * 5 + ["throttled"]
    assert count(proxied, "auth.throttled") == 2 and count(proxied, "auth.locked") == 0  # bob's episode, carol's


def test_the_wait_grows_and_is_capped(proxied):
    with proxied.app_context():
        assert [throttle.delay_for(n) for n in range(3, 13)] == [0, 0, 1, 2, 4, 8, 16, 30, 30, 30]
    for i in range(5):
        attempt(proxied, "bob", "wrong-password", f"10.5.0.{i + 1}")
    waits = []
    for i in range(4):
        with proxied.app_context():  # time passes: the wait is over
            db.session.execute(update(LoginThrottle).values(blocked_until=now_utc() - timedelta(seconds=1)))
            db.session.commit()
        attempt(proxied, "bob", "wrong-password", f"10.6.0.{i + 1}")
        waits.append(int(attempt(proxied, "bob", BOB, "10.7.0.1").headers["Retry-After"]))
    assert waits == [2, 4, 8, 16]


def test_lock_mode_keeps_the_pci_lock(tmp_path):
    app = make_app(tmp_path, LOCKOUT_MODE="lock", LOGIN_LOCK_MINUTES=30)
    client = app.test_client()
    for _ in range(5):
        assert AuthActions(client).login("admin", "wrong").status_code == 401
    assert AuthActions(client).login().status_code == 401  # locked, right password or not, same answer
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "admin"))
        assert user.locked_until - now_utc() > timedelta(minutes=29)
        assert db.session.scalar(select(func.count()).select_from(LoginThrottle).where(
            LoginThrottle.kind == "account")) == 0
    assert count(app, "auth.locked") == 1


@pytest.mark.parametrize("settings,message", [
    ({"LOCKOUT_MODE": "lock", "LOGIN_MAX_FAILURES": "11"}, "LOGIN_MAX_FAILURES at most 10 (it is 11)"),
    ({"LOCKOUT_MODE": "lock", "LOGIN_LOCK_MINUTES": "29"}, "LOGIN_LOCK_MINUTES at least 30 (it is 29)"),
    ({"LOCKOUT_MODE": "sometimes"}, "LOCKOUT_MODE='sometimes' must be one of delay, lock"),
    ({"LOGIN_MAX_FAILURES_PER_IP": "-1"}, "LOGIN_MAX_FAILURES_PER_IP='-1'"),
    ({"LOGIN_IP_BLOCK_MINUTES": "0"}, "LOGIN_IP_BLOCK_MINUTES='0'"),
])
def test_throttle_settings_are_validated(monkeypatch, settings, message):
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        Config()
    assert message in str(error.value)


def test_lock_mode_defaults_to_thirty_minutes(monkeypatch):
    monkeypatch.setenv("LOCKOUT_MODE", "LOCK")
    for name in ("LOGIN_LOCK_MINUTES", "LOGIN_MAX_FAILURES"):
        monkeypatch.delenv(name, raising=False)
    config = Config()
    assert (config.LOCKOUT_MODE, config.LOGIN_LOCK_MINUTES, config.LOGIN_MAX_FAILURES) == ("lock", 30, 5)
    monkeypatch.delenv("LOCKOUT_MODE")
    config = Config()
    assert (config.LOCKOUT_MODE, config.LOGIN_MAX_FAILURES_PER_IP, config.LOGIN_IP_WINDOW_MINUTES,
            config.LOGIN_IP_BLOCK_MINUTES) == ("delay", 20, 15, 15)


def test_an_admin_sees_and_lifts_a_block_a_user_cannot(proxied):
    for i in range(20):
        attempt(proxied, f"nobody{i}", "wrong-password", "10.8.8.8")
    for _ in range(3):
        attempt(proxied, "bob", BOB, "10.8.8.8")
    admin = proxied.test_client()
    AuthActions(admin).login(headers={"X-Forwarded-For": "10.9.9.9"})
    page = admin.get("/users/blocks").get_data(as_text=True)
    assert "10.8.8.8" in page and "address" in page and ">20<" in page and ">3<" in page
    assert 'href="/users/blocks"' in admin.get("/users/").get_data(as_text=True)
    bob = proxied.test_client()
    assert AuthActions(bob).login("bob", BOB, headers={"X-Forwarded-For": "10.9.9.10"}).status_code == 302
    assert bob.get("/users/blocks").status_code == 403
    token = AuthActions(bob).csrf("/")
    lift = {"kind": "ip", "key": "10.8.8.8", "csrf_token": token}
    assert bob.post("/users/blocks/lift", data=lift).status_code == 403
    assert admin.post("/users/blocks/lift", data={"kind": "ip", "key": "10.8.8.8"}).status_code == 400  # no CSRF token
    response = admin.post("/users/blocks/lift", data={"kind": "ip", "key": "10.8.8.8",
                                                      "csrf_token": AuthActions(admin).csrf("/users/blocks")})
    assert response.status_code == 302 and response.headers["Location"] == "/users/blocks"
    assert "Nothing is blocked right now." in admin.get("/users/blocks").get_data(as_text=True)
    assert attempt(proxied, "bob", BOB, "10.8.8.8").status_code == 302
    with proxied.app_context():
        lifted = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.block_lifted")).one()
    assert lifted.actor == "admin" and lifted.details == {"kind": "ip", "key": "10.8.8.8", "by": "admin",
                                                          "failures": 20, "refused": 3}


def test_a_block_that_runs_out_is_reported_once_with_its_refusals(proxied):
    for i in range(20):
        attempt(proxied, f"nobody{i}", "wrong-password", "10.10.0.1")
    attempt(proxied, "bob", BOB, "10.10.0.1")
    with proxied.app_context():
        db.session.execute(update(LoginThrottle).where(LoginThrottle.kind == "ip")
                           .values(blocked_until=now_utc() - timedelta(seconds=1)))
        db.session.commit()
        assert throttle.sweep() == 1 and throttle.sweep() == 0
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.block_lifted")).one()
    assert event.actor == "system" and event.details["reason"] == "expired" and event.details["refused"] == 1
    assert attempt(proxied, "bob", BOB, "10.10.0.1").status_code == 302


def test_old_rows_are_dropped(proxied):
    attempt(proxied, "nobody", "wrong-password", "10.11.0.1")
    with proxied.app_context():
        db.session.execute(update(LoginThrottle).values(window_started_at=now_utc() - timedelta(minutes=16)))
        db.session.commit()
        throttle.sweep()
        assert db.session.scalar(select(func.count()).select_from(LoginThrottle)) == 0


def test_blocks_page_in_the_browser(browser, live_servers):
    """Shots of the blocks page at desktop and phone sizes (GATEHOUSE_SHOTS)."""
    server = live_servers(TRUSTED_PROXY_HOPS="1", LOGIN_MAX_FAILURES_PER_IP="20")
    try:
        name, password = new_user(server)
        for i in range(20):
            _guess(server, f"nobody{i}", "2001:db8:42:7::" + f"{i + 1:x}")
        for i in range(5):
            _guess(server, name, f"10.12.0.{i + 1}")
        _travel(server, kind="account", seconds=60)  # the name's 1 s wait, made long enough to look at
        for size, label in (((1280, 800), "desktop"), ((390, 844), "phone")):
            context = browser.new_context(viewport={"width": size[0], "height": size[1]},
                                          extra_http_headers={"X-Forwarded-For": "10.12.9.9"})
            page = context.new_page()
            try:
                browser_login(page, server)
                page.goto(server.url + "/users/")
                page.click("#blocks-link")
                page.locator("tr.block-ip").wait_for()
                assert page.locator("tr.block-account td.key").inner_text() == name
                _shot(page, f"throttle-blocks-{label}")
            finally:
                context.close()
        context = browser.new_context(extra_http_headers={"X-Forwarded-For": "10.12.9.9"})
        page = context.new_page()
        browser_login(page, server)
        page.goto(server.url + "/users/blocks")
        page.locator("tr.block-ip button").click()
        page.get_by_text("Lifted the block of 2001:db8:42:7::/64.").wait_for()
        assert page.locator("tr.block-ip").count() == 0 and page.locator("tr.block-account").count() == 1
        context.close()
    finally:
        server.stop()


def _travel(server, kind, seconds):
    """Move the end of the current blocks of one kind to seconds from now, in a live server's database."""
    app = server_app(server)
    with app.app_context():
        db.session.execute(update(LoginThrottle).where(LoginThrottle.kind == kind, LoginThrottle.failures >= 5)
                           .values(blocked_until=now_utc() + timedelta(seconds=seconds)))
        db.session.commit()
        db.engine.dispose()


def _guess(server, username, address):
    """Fail one log-in through the server from address (behind the trusted proxy); return the status."""
    http = requests.Session()
    http.headers["X-Forwarded-For"] = address
    token = csrf_from(http.get(server.url + "/login", timeout=10).text)
    return http.post(server.url + "/login", data={"username": username, "password": "wrong-password",
                                                 "csrf_token": token}, allow_redirects=False, timeout=30).status_code


def _shot(page, name):
    """Save a screenshot into GATEHOUSE_SHOTS when set."""
    import os

    folder = os.environ.get("GATEHOUSE_SHOTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        page.screenshot(path=os.path.join(folder, f"{name}.png"), full_page=True)


def _events(server, action, **where):
    """Return the events of one action in a live server's trail."""
    app = server_app(server)
    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.action == action).filter_by(**where)
        rows = db.session.scalars(query).all()
        db.session.expunge_all()
        db.engine.dispose()
    return rows


class Guesser:
    """A client behind the trusted proxy at one address, with its own cookie and CSRF token, posting log-ins."""

    def __init__(self, server, address):
        self.server, self.http = server, requests.Session()
        self.http.headers["X-Forwarded-For"] = address
        self.token = csrf_from(self.http.get(server.url + "/login", timeout=10).text)

    def post(self, username, password):
        """Try one log-in; return the response."""
        return self.http.post(self.server.url + "/login", data={"username": username, "password": password,
                                                               "csrf_token": self.token},
                              allow_redirects=False, timeout=60)


def test_two_processes_on_postgresql_share_the_count(live_servers):
    """Failures from one address through two app processes on one PostgreSQL add up to one block, audited once."""
    env = {"DATABASE_URL": reset_postgres(PG_URL), "TRUSTED_PROXY_HOPS": "1", "LOGIN_MAX_FAILURES_PER_IP": "20"}
    node_a, node_b = live_servers(**env), live_servers(**env)
    try:
        guessers = [Guesser(node, "10.20.0.1") for node in (node_a, node_b) for _ in range(4)]
        with ThreadPoolExecutor(8) as pool:  # 20 parallel failures, half through each process
            statuses = list(pool.map(lambda i: guessers[i % 8].post(f"nobody{i}", "wrong-password").status_code,
                                     range(20)))
        assert statuses == [401] * 20
        for node in (node_a, node_b):
            response = Guesser(node, "10.20.0.1").post("admin", ADMIN_PASSWORD)
            assert response.status_code == 429 and "from your address" in response.text
        assert Guesser(node_b, "10.20.0.2").post("admin", ADMIN_PASSWORD).status_code == 302
        blocked = _events(node_a, "auth.address_blocked")
        assert len(blocked) == 1 and blocked[0].details["failures"] == 20
        assert len(_events(node_a, "auth.login_failed")) == 20
    finally:
        node_a.stop()
        node_b.stop()


def test_the_real_user_logs_in_while_one_address_fails_a_thousand_times(live_servers):
    """Through gunicorn: 1 000 wrong passwords for one name from one address; the real user still gets in."""
    server = live_servers(TRUSTED_PROXY_HOPS="1", LOGIN_MAX_FAILURES_PER_IP="20")
    try:
        name, password = new_user(server)
        attackers = [Guesser(server, "10.30.0.1") for _ in range(8)]
        statuses, finished = [], []

        def attack(guesser):
            for _ in range(125):
                statuses.append(guesser.post(name, "wrong-password").status_code)
            finished.append(time.monotonic())

        began = time.monotonic()
        threads = [threading.Thread(target=attack, args=(guesser,)) for guesser in attackers]
        for thread in threads:
            thread.start()
        while len(statuses) < 50:
            time.sleep(0.01)
        user, tries, asked = Guesser(server, "10.31.0.2"), 0, time.monotonic()
        while True:  # the real user, at their own address, tries until the name's wait lets them in
            tries += 1
            response = user.post(name, password)
            if response.status_code == 302:
                break
            assert response.status_code == 429 and tries < 20, response.status_code
            time.sleep(int(response.headers["Retry-After"]))
        logged_in = time.monotonic() - asked
        attacking = len(statuses) < 1000
        for thread in threads:
            thread.join(120)
        took = max(finished) - began
        print(f"1 000 failures from one address: {took:.1f} s ({1000 / took:.0f}/s); the real user logged in after "
              f"{logged_in:.2f} s and {tries} tries, {'while' if attacking else 'after'} the attack ran")
        assert len(statuses) == 1000 and set(statuses) <= {401, 429}
        failed = _events(server, "auth.login_failed", actor=name)
        assert statuses.count(401) == sum(e.details["reason"] == "wrong_password" for e in failed)
        assert len(failed) <= 20 + 8 + tries  # refused attempts from the blocked address write nothing
        assert len(_events(server, "auth.address_blocked")) == 1
        assert len(_events(server, "auth.login", actor=name)) == 1
    finally:
        server.stop()
