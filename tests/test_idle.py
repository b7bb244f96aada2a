"""Idle timeout (issue 14, item 4): polls do not count, requests and terminal input do; expiry ends it all."""
import json
import os
import re
import time
import uuid
from datetime import timedelta

import pytest
import simple_websocket
from sqlalchemy import select, update

from app.audit.models import AuditEvent
from app.auth import logins
from app.auth.models import LoginSession
from app.dbtypes import now_utc
from app.extensions import db
from config import Config, ConfigError
from tests.support import (AuthActions, browser_login, live_events, make_app, new_user,
                           open_terminal, server_app, wait_for)

POLL = {"X-Gatehouse-Poll": "1"}


@pytest.fixture
def idle_app(tmp_path):
    app = make_app(tmp_path, SESSION_IDLE_SECONDS=60)
    yield app
    with app.app_context():
        db.engine.dispose()


def idle_for(app, seconds):
    """Make every log-in look as if its last activity was seconds ago."""
    with app.app_context():
        db.session.execute(update(LoginSession).values(active_at=now_utc() - timedelta(seconds=seconds)))
        db.session.commit()


def active_at(app):
    with app.app_context():
        return db.session.scalars(select(LoginSession)).one().active_at


def test_idle_settings(monkeypatch):
    for name in ("SESSION_IDLE_MINUTES", "SESSION_IDLE_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    assert (Config().SESSION_IDLE_MINUTES, Config().SESSION_IDLE_SECONDS) == (15, 900)  # PCI DSS 8.2.8
    monkeypatch.setenv("SESSION_IDLE_MINUTES", "0")
    assert Config().SESSION_IDLE_SECONDS == 0
    for value in ("-1", "soon", "1441"):
        monkeypatch.setenv("SESSION_IDLE_MINUTES", value)
        with pytest.raises(ConfigError, match="SESSION_IDLE_MINUTES"):
            Config()


def test_polls_do_not_extend_a_real_request_does(idle_app):
    client = idle_app.test_client()
    AuthActions(client).login()
    idle_for(idle_app, 50)
    before = active_at(idle_app)
    for path in ("/audit/rows", "/terminals/connected", "/account/idle"):
        assert client.get(path, headers=POLL).status_code == 200, path
    assert active_at(idle_app) == before
    left = client.get("/account/idle", headers=POLL).get_json()["left"]
    assert 5 <= left <= 10
    page = client.get("/").get_data(as_text=True)  # the user clicked something
    assert active_at(idle_app) > before
    assert 58 <= client.get("/account/idle", headers=POLL).get_json()["left"] <= 60
    badge = re.search(r'id="idle-badge"[^>]*data-left="(\d+)"[^>]*data-warn="(\d+)"', page)
    assert badge and 58 <= int(badge[1]) <= 60 and badge[2] == "120"  # the last two minutes, whatever the limit


def test_an_idle_log_in_is_refused_then_revoked_once(idle_app):
    client = idle_app.test_client()
    AuthActions(client).login()
    idle_for(idle_app, 61)
    assert client.get("/", headers=POLL).status_code == 302
    assert client.get("/").headers["Location"].startswith("/login")
    assert client.get("/account/idle").get_json() == {"left": 0}
    with idle_app.app_context():
        assert logins.expire_due() == 1 and logins.expire_due() == 0
        row = db.session.scalars(select(LoginSession)).one()
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.session_revoked")).one()
    assert row.revoke_reason == "idle_timeout" and event.actor == "system"
    assert event.details["reason"] == "idle_timeout" and "no activity for too long" in event.message


def test_stay_logged_in_extends_with_a_csrf_token_only(idle_app):
    client = idle_app.test_client()
    auth = AuthActions(client)
    auth.login()
    idle_for(idle_app, 55)
    assert client.post("/account/idle/extend", headers=POLL).status_code == 400  # no CSRF token
    assert client.get("/account/idle", headers=POLL).get_json()["left"] <= 5
    token = auth.csrf("/account/sessions")
    idle_for(idle_app, 55)
    answer = client.post("/account/idle/extend", headers={"X-CSRFToken": token, **POLL})
    assert answer.status_code == 200 and answer.get_json()["left"] >= 59
    stranger = idle_app.test_client()
    token = AuthActions(stranger).csrf()
    assert stranger.post("/account/idle/extend", headers={"X-CSRFToken": token}).status_code == 302


def test_no_idle_limit_when_off(tmp_path):
    app = make_app(tmp_path, SESSION_IDLE_SECONDS=0)
    client = app.test_client()
    AuthActions(client).login()
    idle_for(app, 7 * 3600)
    assert client.get("/").status_code == 200
    with app.app_context():
        assert logins.expire_due() == 0
    assert client.get("/account/idle", headers=POLL).get_json()["left"] > 7 * 3600


# --- real server, real sshd, real Chromium ---------------------------------------------------------

@pytest.fixture(scope="module")
def idle_server(module_live_servers):
    """gunicorn with a 6 s idle limit (heartbeats every second, so terminal input is noted within about one)."""
    return module_live_servers(SESSION_IDLE_SECONDS="6")


def test_typing_keeps_a_terminal_alive_and_idleness_closes_it(idle_server, sshd):
    name, password = new_user(idle_server)
    http = idle_server.login(name, password)
    device = "idle-" + uuid.uuid4().hex[:6]
    device_id = idle_server.add_device(http, sshd, device)
    ws = open_terminal(f"{idle_server.ws_url}/terminals/{device_id}/ws", http, idle_server.url)
    for _ in range(10):  # 10 s of typing, longer than the 6 s limit, and only polls from the page meanwhile
        ws.send(b":\n")
        http.get(idle_server.url + "/account/idle", headers=POLL, timeout=10)
        time.sleep(1)
    assert http.get(idle_server.url + "/account/idle", headers=POLL, timeout=10).json()["left"] > 2
    assert http.get(idle_server.url + "/", allow_redirects=False, timeout=10).status_code == 200
    started, controls = time.monotonic(), []
    while time.monotonic() - started < 15:  # now nothing but polls: the log-in and its terminal end
        http.get(idle_server.url + "/account/idle", headers=POLL, timeout=10)
        try:
            frame = ws.receive(timeout=0.5)
        except simple_websocket.ConnectionClosed:
            break
        if isinstance(frame, str):
            controls.append(json.loads(frame))
    took = time.monotonic() - started
    closed = [c for c in controls if c["type"] == "closed"]
    assert closed and closed[0]["reason"] == "expired", controls
    assert closed[0]["message"] == "Your log-in expired after a time without activity; log in again."
    assert http.get(idle_server.url + "/", allow_redirects=False, timeout=10).status_code == 302
    ended = [e for e in live_events(idle_server, "session.ended") if e.target.startswith(device + " ")]
    assert ended and ended[0].details["reason"] == "expired"
    revoked = [e for e in live_events(idle_server, "auth.session_revoked") if e.details["user"] == name]
    assert [e.details["reason"] for e in revoked] == ["idle_timeout"]
    print(f"idle limit 6 s: the terminal closed {took:.1f} s after the last keystroke")


@pytest.fixture
def badge_server(live_servers):
    """gunicorn with a 10 s idle limit: all of it lies in the last two minutes, so the badge offers to stay at once."""
    return live_servers(SESSION_IDLE_SECONDS="10")


def test_the_badge_counts_down_offers_to_stay_and_leaves_at_the_end(browser, badge_server):
    for width, height in ((1280, 800), (390, 844)):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        try:
            browser_login(page, badge_server)
            badge = page.locator("#idle-badge")
            badge.locator("button.stay").wait_for(state="visible")  # under two minutes left: from the start
            assert re.fullmatch(r"0:(10|0\d)", badge.locator(".left").inner_text())
            _shot(page, f"idle-badge-ending-{width}x{height}")
            page.wait_for_function("() => /^0:0[0-6]$/.test(document.querySelector('#idle-badge .left').textContent)")
            badge.locator("button.stay").click()
            page.wait_for_function("() => /^0:(10|09)$/.test(document.querySelector('#idle-badge .left').textContent)")
            page.wait_for_url(re.compile(r"/login\?expired=1"))  # nobody touches it now
            page.get_by_text("Your log-in expired after a time without activity").wait_for()
            if width == 390:
                _shot(page, f"idle-expired-{width}x{height}")
        finally:
            context.close()
    # The page leaves at zero by its own clock; the maintenance loop writes the revocation within a second or so.
    revoked = wait_for(lambda: len(live_events(badge_server, "auth.session_revoked")) >= 2 and
                       live_events(badge_server, "auth.session_revoked"))
    assert [e.details["reason"] for e in revoked] == ["idle_timeout", "idle_timeout"]


@pytest.fixture
def long_badge_server(live_servers):
    """gunicorn with a 150 s idle limit: more than two minutes, less than four."""
    return live_servers(SESSION_IDLE_SECONDS="150")


def make_idle(server, seconds):
    """Move every log-in's last activity seconds back, in the live server's database."""
    app = server_app(server)
    idle_for(app, seconds)
    with app.app_context():
        db.engine.dispose()


def test_with_a_150_s_limit_the_badge_offers_to_stay_in_the_last_two_minutes(browser, long_badge_server):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        page.clock.install()  # the badge's own clock, fast-forwarded below; the server's runs as it does
        browser_login(page, long_badge_server)
        badge, stay = page.locator("#idle-badge"), page.locator("#idle-badge button.stay")
        assert badge.locator(".left").inner_text() == "3 min" and stay.is_hidden()  # 150 s: not yet
        page.wait_for_load_state("networkidle")  # the page's own first requests (the tabs to restore) are activity
        make_idle(long_badge_server, 40)  # the server's truth: 110 s left
        page.clock.fast_forward(31_000)  # past the badge's 30 s between questions: it asks the server
        stay.wait_for(state="visible")
        page.wait_for_function("() => /^1:[0-5]\\d$/.test(document.querySelector('#idle-badge .left').textContent)")
        assert "ending" in badge.get_attribute("class")
        _shot(page, "idle-badge-150s-ending")
    finally:
        context.close()


def _shot(page, name):
    """Save a screenshot into GATEHOUSE_SHOTS when set."""
    folder = os.environ.get("GATEHOUSE_SHOTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        page.screenshot(path=os.path.join(folder, f"{name}.png"))
