"""Log-in sessions that really end: server-side rows, terminals that follow their log-in, two nodes."""
import time
import uuid
from datetime import timedelta

import pytest
import requests
import simple_websocket
from sqlalchemy import select, update

from app.audit.models import AuditEvent
from app.auth.models import LoginSession, User
from app.dbtypes import now_utc
from app.extensions import db
from tests.support import (WAIT_SECONDS, AuthActions, browser_login, connect_terminal, console, live_events,
                           open_terminal, reset_postgres)


def wait_for_event(server, action, match, timeout=WAIT_SECONDS):
    """Wait until an event of action satisfying match is in the trail; return it and the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        found = [e for e in live_events(server, action) if match(e)]
        if found:
            return found[-1], time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"no {action} within {timeout} s")


def new_user(server, password="user-password-long"):
    """Create a user through the console on a live server; return its name."""
    name = "u-" + uuid.uuid4().hex[:8]
    console(server, "users", "create", name, "--password", password, "--no-must-change")
    return name


def cookie_of(http):
    return "; ".join(f"{c.name}={c.value}" for c in http.cookies)


# --- the app alone ---------------------------------------------------------------------------------

def test_a_copied_cookie_is_refused_after_log_out(app, client, auth):
    auth.login()
    token = auth.csrf("/")
    saved = client.get_cookie("gatehouse_session").value  # what a thief would copy: cookie and token
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    replay = app.test_client()
    replay.set_cookie("gatehouse_session", saved)
    for path in ("/", "/audit/rows", "/devices/", "/terminals/connected", "/account/sessions"):
        response = replay.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login"), path
    again = replay.post("/logout", data={"csrf_token": token})  # a replayed log-out...
    assert again.status_code == 302 and again.headers["Location"].startswith("/login")
    with app.app_context():
        logouts = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.logout")).all()
        row = db.session.scalars(select(LoginSession)).one()
    assert len(logouts) == 1  # ...writes nothing
    assert row.revoke_reason == "logged_out" and logouts[0].details["login"] == row.handle


def test_cookie_carries_no_user_id_and_the_database_keeps_no_token(app, client, auth):
    auth.login()
    with client.session_transaction() as session:
        token = session["_user_id"]
    with app.app_context():
        row = db.session.scalars(select(LoginSession)).one()
    assert len(token) >= 40 and row.id != token and token not in row.id


def test_an_expired_log_in_is_refused(app, client, auth):
    auth.login()
    assert client.get("/").status_code == 200
    with app.app_context():
        db.session.execute(update(LoginSession).values(expires_at=now_utc() - timedelta(seconds=1)))
        db.session.commit()
    assert client.get("/").status_code == 302
    with app.app_context():
        from app.auth import logins

        assert logins.expire_due() == 1 and logins.expire_due() == 0  # the sweep ends it once, audited
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.session_revoked")).one()
    assert event.details["reason"] == "expired" and event.actor == "system"


def test_lifetime_is_absolute_not_idle(app, client, auth):
    auth.login()
    with app.app_context():
        row = db.session.scalars(select(LoginSession)).one()
        created, expires = row.created_at, row.expires_at
    for _ in range(3):
        assert client.get("/").status_code == 200
    with app.app_context():
        assert db.session.scalars(select(LoginSession)).one().expires_at == expires
    assert expires - created == timedelta(hours=app.config["SESSION_TTL_HOURS"])


def change_password(client, current="admin-password-for-tests", new="a-new-password-1"):
    """Change the logged-in user's own password through the form; return the answer."""
    token = AuthActions(client).csrf("/account/password")
    return client.post("/account/password", data={"current": current, "new": new, "confirm": new,
                                                  "csrf_token": token})


def test_password_change_gives_this_browser_a_new_token_and_ends_every_earlier_one(app, client, auth):
    auth.login()
    other = app.test_client()
    assert AuthActions(other).login().status_code == 302
    before = client.get_cookie("gatehouse_session").value  # a copy taken before the change
    with app.app_context():
        first_end = db.session.scalars(select(LoginSession.expires_at).order_by(LoginSession.created_at)).first()
    assert change_password(client).status_code == 302
    assert client.get_cookie("gatehouse_session").value != before
    assert client.get("/").status_code == 200 and other.get("/").status_code == 302
    copy = app.test_client()
    copy.set_cookie("gatehouse_session", before)
    for path in ("/", "/account/sessions", "/terminals/connected", "/account/password"):
        response = copy.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login"), path
    with app.app_context():
        revoked = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.session_revoked")).all()
        live = db.session.scalars(select(LoginSession).where(LoginSession.revoked_at.is_(None))).all()
    assert [e.details["reason"] for e in revoked] == ["password_changed", "password_changed"]
    assert all(e.actor == "admin" for e in revoked)
    assert len(live) == 1 and live[0].expires_at == first_end  # the new token keeps the log-in's absolute end


def test_active_log_ins_list_and_end(app, client, auth):
    from tests.support import logged_in_user

    auth.login()
    bob = logged_in_user(app, "bob")
    mine = client.get("/account/sessions").get_data(as_text=True)
    assert "this browser" in mine and "bob" in mine  # an admin sees everyone's
    bobs = bob.get("/account/sessions").get_data(as_text=True)
    assert "admin" not in bobs.split("<tbody>")[1]  # a user sees only their own
    with app.app_context():
        bob_id = db.session.scalar(select(User.id).where(User.username == "bob"))
        handle = db.session.scalars(select(LoginSession).where(LoginSession.user_id == bob_id)).one().handle
        admin_handle = db.session.scalars(select(LoginSession).where(LoginSession.user_id != bob_id)).one().handle
    token = AuthActions(bob).csrf("/")
    assert bob.post(f"/account/sessions/{admin_handle}/end", data={"csrf_token": token}).status_code == 404
    assert bob.post("/account/sessions/zzzzzzzzzzzz/end", data={"csrf_token": token}).status_code == 404
    response = client.post(f"/account/sessions/{handle}/end", data={"csrf_token": auth.csrf("/")})
    assert response.status_code == 302 and bob.get("/").status_code == 302
    with app.app_context():
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.session_revoked")).one()
    assert event.details == {"login": handle, "user": "bob", "reason": "ended_by_admin", "by": "admin",
                             "login_ip": "127.0.0.1"}


def test_user_ids_are_never_reused(app, client, auth):
    """A new user must not inherit a deleted user's id, nor see their trail."""
    from tests.support import logged_in_user

    auth.login()
    first = logged_in_user(app, "carol")
    first.get("/audit/")  # an event of carol's own
    with app.app_context():
        carol_id = db.session.scalar(select(User.id).where(User.username == "carol"))
    client.post(f"/users/{carol_id}/delete", data={"csrf_token": auth.csrf("/users/")})
    second = logged_in_user(app, "dave")
    with app.app_context():
        dave_id = db.session.scalar(select(User.id).where(User.username == "dave"))
    assert dave_id > carol_id
    assert "carol" not in second.get("/audit/export.jsonl").get_data(as_text=True)


# --- real server, real sshd, real Chromium ---------------------------------------------------------

@pytest.fixture
def user_with_device(live_server, sshd):
    """A fresh user (so no other test's log-ins interfere), logged in over HTTP, with one device."""
    name = new_user(live_server)
    http = live_server.login(name, "user-password-long")
    device = "box-" + uuid.uuid4().hex[:6]
    device_id = live_server.add_device(http, sshd, device)
    return name, http, device, device_id


def test_old_cookie_cannot_open_a_terminal_after_log_out(live_server, user_with_device):
    _, http, _, device_id = user_with_device
    url = f"{live_server.ws_url}/terminals/{device_id}/ws"
    copy = requests.Session()
    copy.cookies.update(http.cookies)
    ws = open_terminal(url, http, live_server.url)
    http.post(live_server.url + "/logout", data={"csrf_token": live_server.csrf(http)})
    with pytest.raises(simple_websocket.ConnectionError, match="302"):
        connect_terminal(url, copy, live_server.url)
    assert copy.get(live_server.url + "/", allow_redirects=False).status_code == 302
    # The terminal that log-in had open ends too, with the reason in the tab and in the trail.
    controls = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            frame = ws.receive(timeout=0.2)
        except simple_websocket.ConnectionClosed:
            break
        if isinstance(frame, str):
            controls.append(frame)
    assert any('"reason": "logged_out"' in c and "logged out in another window" in c for c in controls), controls


def test_old_cookie_cannot_open_a_terminal_after_a_password_change(live_server, user_with_device):
    _, http, device, device_id = user_with_device
    url = f"{live_server.ws_url}/terminals/{device_id}/ws"
    copy = requests.Session()
    copy.cookies.update(http.cookies)  # what a thief would have copied before the change
    ws = open_terminal(url, http, live_server.url)
    changed = http.post(live_server.url + "/account/password", allow_redirects=False, timeout=10, data={
        "current": "user-password-long", "new": "changed-password-1", "confirm": "changed-password-1",
        "csrf_token": live_server.csrf(http)})
    assert changed.status_code == 302 and changed.headers["Location"] == "/"
    with pytest.raises(simple_websocket.ConnectionError, match="302"):
        connect_terminal(url, copy, live_server.url)
    assert copy.get(live_server.url + "/", allow_redirects=False).status_code == 302
    # The browser that changed it goes on under its new token: pages and a new terminal open.
    assert http.get(live_server.url + "/", allow_redirects=False).status_code == 200
    fresh = open_terminal(url, http, live_server.url)
    fresh.close()
    # The terminal opened before the change ends (documented: it belongs to the log-in from before).
    controls = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            frame = ws.receive(timeout=0.2)
        except simple_websocket.ConnectionClosed:
            break
        if isinstance(frame, str):
            controls.append(frame)
    assert any('"reason": "password_changed"' in c for c in controls), controls
    ended, _ = wait_for_event(live_server, "session.ended", lambda e: e.target.startswith(device + " ")
                              and e.details["reason"] == "password_changed")
    assert ended


def _open_in_browser(page, live_server, name, device):
    browser_login(page, live_server, name, "user-password-long")
    page.locator(f'button.open-terminal[data-device-name="{device}"]').first.click()
    page.locator(".xterm-rows").get_by_text("$").first.wait_for()
    page.keyboard.type("echo up-$((20+3))")
    page.keyboard.press("Enter")
    page.locator(".xterm-rows").get_by_text("up-23").wait_for()


def test_password_change_in_one_browser_ends_the_terminal_in_another(browser, page, live_server, user_with_device):
    name, _, device, _ = user_with_device
    _open_in_browser(page, live_server, name, device)  # browser B
    other = browser.new_context()  # browser A
    try:
        a = other.new_page()
        browser_login(a, live_server, name, "user-password-long")
        a.goto(live_server.url + "/account/password")
        a.fill("#current", "user-password-long")
        a.fill("#new", "changed-password-1")
        a.fill("#confirm", "changed-password-1")
        a.click("main button[type=submit]")
        a.wait_for_url(live_server.url + "/")
        started = time.monotonic()
        page.locator(".xterm-rows").get_by_text("Your password was changed").wait_for()
        took = time.monotonic() - started
    finally:
        other.close()
    page.locator(".tab-status", has_text="closed").wait_for()
    ended, _ = wait_for_event(live_server, "session.ended", lambda e: e.target.startswith(device + " "))
    assert ended.details["reason"] == "password_changed" and took < 5
    print(f"password change -> terminal closed in the other browser: {took:.2f} s")


def test_ending_a_log_in_from_the_list_ends_its_terminal(browser, page, live_server, user_with_device):
    name, http, device, _ = user_with_device
    _open_in_browser(page, live_server, name, device)
    listing = http.get(live_server.url + "/account/sessions").text
    assert listing.count("/end\"") == 2  # this requests log-in and the browser's
    admin = live_server.login()
    with_handles = admin.get(live_server.url + "/account/sessions").text
    import re

    handles = re.findall(r'<tr id="login-([0-9a-f]{12})">\s*<td>' + re.escape(name), with_handles)
    started = time.monotonic()
    for handle in handles:  # the admin ends both of the user's log-ins
        admin.post(f"{live_server.url}/account/sessions/{handle}/end", data={"csrf_token": live_server.csrf(admin)})
    page.locator(".xterm-rows").get_by_text("An admin ended your log-in").wait_for()
    took = time.monotonic() - started
    ended, _ = wait_for_event(live_server, "session.ended", lambda e: e.target.startswith(device + " "))
    assert ended.details["reason"] == "ended_by_admin" and took < 5
    assert http.get(live_server.url + "/", allow_redirects=False).status_code == 302
    print(f"admin ends a log-in -> its terminal closed: {took:.2f} s")


def test_log_out_on_one_node_ends_the_cookie_and_terminal_on_the_other(live_servers, sshd):
    """Two app processes on one PostgreSQL: the database is the truth for every log-in."""
    url = reset_postgres()
    node_a, node_b = live_servers(DATABASE_URL=url), live_servers(DATABASE_URL=url)
    try:
        http = node_a.login()
        device_id = node_a.add_device(http, sshd, "two-nodes")
        on_b = requests.Session()
        on_b.cookies.update(http.cookies)
        assert on_b.get(node_b.url + "/", allow_redirects=False).status_code == 200
        ws = open_terminal(f"{node_b.ws_url}/terminals/{device_id}/ws", on_b, node_b.url)  # held by node b
        started = time.monotonic()
        http.post(node_a.url + "/logout", data={"csrf_token": node_a.csrf(http)})  # served by node a
        assert on_b.get(node_b.url + "/", allow_redirects=False).status_code == 302
        ended, _ = wait_for_event(node_b, "session.ended", lambda e: e.target.startswith("two-nodes "))
        took = time.monotonic() - started
        assert ended.details["reason"] == "logged_out"
        assert not ws.connected
        print(f"log-out on node a -> terminal on node b closed: {took:.2f} s")
    finally:
        node_a.stop()
        node_b.stop()
