"""Accounts an admin can run: a password reset from the users page, and a password an admin chose must be changed
before anything else opens (the page, the console, the first admin's generated password)."""
import logging
import os
import re
from pathlib import Path

import pytest
import simple_websocket
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.auth.models import LoginSession, User
from app.extensions import db
from tests.support import (AuthActions, browser_login, connect_terminal, console, csrf_from,
                           live_events, make_app, new_user, wait_for)

PAGES = ("/", "/devices/", "/audit/", "/account/2fa", "/account/sessions", "/users/", "/teams/", "/nowhere")
SHOTS = os.environ.get("GATEHOUSE_SHOTS")


def events(app, action):
    """Return the events of one action, oldest first."""
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).all()
        db.session.expunge_all()
    return rows


def user_row(app, name):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == name))
        db.session.expunge(user)
        return user


def create_on_page(client, name, password="chosen-by-admin-1"):
    """Create a user from the users page as the logged-in admin."""
    token = csrf_from(client.get("/users/").get_data(as_text=True))
    response = client.post("/users/", data={"username": name, "password": password, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)[:1000]


def reset_on_page(client, user_id):
    """Reset a user's password from the users page; return the password the answer shows once."""
    token = csrf_from(client.get("/users/").get_data(as_text=True))
    response = client.post(f"/users/{user_id}/reset-password", data={"csrf_token": token})
    assert response.status_code == 200, response.status_code
    return re.search(r'<code id="new-password">([^<]+)</code>', response.get_data(as_text=True)).group(1)


def change_own(client, current, new):
    """Change the logged-in user's password through the form; return the answer."""
    token = csrf_from(client.get("/account/password").get_data(as_text=True))
    return client.post("/account/password", data={"current": current, "new": new, "confirm": new,
                                                  "csrf_token": token})


def assert_only_the_change_form_opens(client):
    """Every page leads to the change form; htmx requests are told to move there."""
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"] == "/account/password", path
    partial = client.get("/audit/rows", headers={"HX-Request": "true"})
    assert partial.status_code == 204 and partial.headers["HX-Redirect"] == "/account/password"
    page = client.get("/account/password").get_data(as_text=True)
    assert 'id="must-change"' in page and '">Cancel</a>' not in page


def test_a_user_created_on_the_page_must_choose_their_own_password_first(app, client, auth):
    auth.login()
    create_on_page(client, "bob")
    created = events(app, "user.created")[-1]
    assert created.details["must_change"] is True and user_row(app, "bob").must_change_password
    assert "must change password" in client.get("/users/").get_data(as_text=True)
    bob = app.test_client()
    assert AuthActions(bob).login("bob", "chosen-by-admin-1").status_code == 302
    assert_only_the_change_form_opens(bob)
    assert change_own(bob, "chosen-by-admin-1", "chosen-by-admin-1").status_code == 422  # not the same one again
    response = change_own(bob, "chosen-by-admin-1", "bobs-own-password")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert bob.get("/").status_code == 200 and not user_row(app, "bob").must_change_password
    assert events(app, "auth.password_changed")[-1].details == {"required": True}


def test_an_admin_resets_a_password_shown_once_and_the_users_log_ins_end(app, client, auth, caplog):
    caplog.set_level(logging.DEBUG)
    auth.login()
    create_on_page(client, "bob")
    bob = app.test_client()
    AuthActions(bob).login("bob", "chosen-by-admin-1")
    assert change_own(bob, "chosen-by-admin-1", "bobs-own-password").status_code == 302
    bob_id = user_row(app, "bob").id
    password = reset_on_page(client, bob_id)
    assert len(password) >= 20 and password != reset_on_page(client, bob_id)  # each reset makes a new one
    password = reset_on_page(client, bob_id)
    assert bob.get("/").status_code == 302 and bob.get("/").headers["Location"].startswith("/login")
    assert AuthActions(app.test_client()).login("bob", "bobs-own-password").status_code == 401
    with app.app_context():
        assert not db.session.scalars(sessions_of(bob_id)).all()  # every log-in of bob's ended
    changed = events(app, "auth.password_changed")[-1]
    assert changed.actor == "admin" and changed.details == {"username": "bob", "by": "admin", "reset": True,
                                                            "must_change": True}
    assert events(app, "auth.session_revoked")[-1].details["reason"] == "password_changed"
    trail = "\n".join(f"{e.message} {e.details}" for e in events(app, "auth.password_changed"))
    assert password not in trail and password not in caplog.text
    assert password not in client.get("/users/").get_data(as_text=True)  # shown on the answer only
    again = app.test_client()
    assert AuthActions(again).login("bob", password).status_code == 302
    assert_only_the_change_form_opens(again)
    assert change_own(again, password, "bobs-newer-password").status_code == 302
    assert again.get("/devices/").status_code == 200


def sessions_of(user_id):
    return select(LoginSession).where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))


def test_only_an_admin_resets_and_never_their_own_here(app, client, auth):
    from tests.support import logged_in_user

    auth.login()
    bob = logged_in_user(app, "bob")
    admin_id, bob_id = user_row(app, "admin").id, user_row(app, "bob").id
    token = csrf_from(bob.get("/").get_data(as_text=True))
    assert bob.post(f"/users/{admin_id}/reset-password", data={"csrf_token": token}).status_code == 403
    token = csrf_from(client.get("/users/").get_data(as_text=True))
    assert client.post(f"/users/{admin_id}/reset-password", data={"csrf_token": token}).status_code == 400
    assert client.post(f"/users/{bob_id}/reset-password").status_code == 400  # no CSRF token
    assert client.get(f"/users/{bob_id}/reset-password").status_code == 405
    assert client.post("/users/999999/reset-password", data={"csrf_token": token}).status_code == 404
    assert not events(app, "auth.password_changed") and bob.get("/").status_code == 200


def test_the_console_marks_the_passwords_it_sets_unless_told_their_user_typed_them(app, runner):
    assert runner.invoke(args=["users", "create", "carol", "--password", "carol-password-1"]).exit_code == 0
    assert runner.invoke(args=["users", "create", "dave", "--password", "dave-password-12",
                               "--no-must-change"]).exit_code == 0
    assert user_row(app, "carol").must_change_password and not user_row(app, "dave").must_change_password
    assert runner.invoke(args=["users", "reset-password", "dave", "--password", "dave-password-13"]).exit_code == 0
    assert user_row(app, "dave").must_change_password
    reset = events(app, "auth.password_changed")[-1]
    assert reset.actor == "console" and reset.details["must_change"] is True and reset.details["by"] == "console"
    dave = app.test_client()
    assert AuthActions(dave).login("dave", "dave-password-13").status_code == 302
    assert_only_the_change_form_opens(dave)


def test_the_first_admin_changes_a_generated_password_but_not_one_from_the_environment(tmp_path, capfd, app):
    assert not user_row(app, "admin").must_change_password  # ADMIN_PASSWORD: the operator's own choice
    generated_app = make_app(tmp_path / "generated", ADMIN_PASSWORD=None)
    password = capfd.readouterr().err.split("with password: ")[1].split()[0]
    assert user_row(generated_app, "admin").must_change_password
    assert events(generated_app, "user.created")[0].details["must_change"] is True
    client = generated_app.test_client()
    assert AuthActions(client).login("admin", password).status_code == 302
    assert_only_the_change_form_opens(client)


# --- real server, real sshd, real Chromium ---------------------------------------------------------------

def test_a_terminal_does_not_open_while_the_password_must_change(live_server, sshd):
    name, password = new_user(live_server)
    http = live_server.login(name, password)
    device_id = live_server.add_device(http, sshd, "must-change-box")
    console(live_server, "users", "reset-password", name, "--password", "console-chose-this-1")
    http = live_server.login(name, "console-chose-this-1")
    url = f"{live_server.ws_url}/terminals/{device_id}/ws"
    with pytest.raises(simple_websocket.ConnectionError, match="302"):
        connect_terminal(url, http, live_server.url)


def shot(page, name):
    """Save a screenshot into GATEHOUSE_SHOTS when it is set."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def test_browser_reset_on_the_users_page_then_the_user_must_change_it(browser, live_server):
    victim, _ = new_user(live_server)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    try:
        browser_login(page, live_server)
        page.goto(live_server.url + "/users/")
        row = page.locator("tr", has_text=victim)
        row.get_by_role("button", name="Reset password").click()
        dialog = page.locator("#confirm-dialog")
        assert f"Reset the password of {victim}?" in dialog.locator("#confirm-question").inner_text()
        dialog.locator(".confirm-yes").click()
        shown = page.locator("#new-password")
        shown.wait_for()
        password = shown.inner_text()
        shot(page, "users-password-reset-desktop")
        page.get_by_role("button", name="Copy").click()
        page.locator(".copy-status", has_text="Copied").wait_for()
        assert page.evaluate("() => navigator.clipboard.readText()") == password
        page.click("#back-to-users")
        page.locator("tr", has_text=victim).get_by_text("must change password").wait_for()
    finally:
        context.close()
    reset = [e for e in live_events(live_server, "auth.password_changed") if e.details.get("username") == victim]
    assert reset and reset[-1].details["reset"] is True and reset[-1].actor == "admin"

    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        page.goto(live_server.url + "/login")
        page.fill("#username", victim)
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_url(live_server.url + "/account/password")
        page.locator("#must-change").wait_for()
        shot(page, "password-must-change-phone")
        page.goto(live_server.url + "/audit/")
        page.wait_for_url(live_server.url + "/account/password")
        page.fill("#current", password)
        page.fill("#new", "my-very-own-password")
        page.fill("#confirm", "my-very-own-password")
        page.click("main button[type=submit]")
        page.wait_for_url(live_server.url + "/")
        page.goto(live_server.url + "/audit/")
        assert page.url == live_server.url + "/audit/"
    finally:
        context.close()
    wait_for(lambda: [e for e in live_events(live_server, "auth.password_changed")
                      if e.actor == victim and e.details == {"required": True}])

