"""Log in, log out, change password, first admin, CSRF."""
import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.auth.models import User
from app.extensions import db
from tests.support import ADMIN_PASSWORD, AuthActions


def test_login_page_renders(client):
    response = client.get("/login")
    assert response.status_code == 200
    assert b'name="username"' in response.data


def test_home_needs_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_login_success_and_logout(client, auth):
    response = auth.login()
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    assert b'aria-label="Change password"' in home.data and b'aria-label="Log out"' in home.data
    response = auth.logout()
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("username,password", [("admin", "wrong-password"), ("nobody", ADMIN_PASSWORD), ("", "")])
def test_login_failure_gives_one_message(client, auth, username, password):
    response = auth.login(username, password)
    assert response.status_code in (401, 422)  # wrong credentials, or an incomplete form
    if username:
        assert response.status_code == 401
        assert b"Invalid username or password." in response.data
    assert client.get("/").status_code == 302


def test_login_next_must_stay_on_site(client, auth):
    token = auth.csrf()
    response = client.post("/login?next=//evil.example/x", data={"username": "admin", "password": ADMIN_PASSWORD,
                                                              "csrf_token": token})
    assert response.headers["Location"] == "/"


def test_csrf_rejected_without_token(client):
    response = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 400
    assert b"CSRF" in response.data


def test_csrf_rejected_on_htmx_request_without_header(client, auth):
    auth.login()
    response = client.post("/devices/", data={"name": "x"}, headers={"HX-Request": "true"})
    assert response.status_code == 400


def test_session_cookie_flags(client, auth):
    response = auth.login()
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    secure = client.post("/logout", base_url="https://localhost")  # no token: rejected, but cookie flag shows
    assert secure.status_code == 400


def test_secure_cookie_over_https(app):
    client = app.test_client()
    page = client.get("/login", base_url="https://localhost")
    assert "Secure" in page.headers["Set-Cookie"]


def test_lockout_after_repeated_failures(app, client, auth):
    app.config.update(LOCKOUT_MODE="lock", LOGIN_MAX_FAILURES=3)  # the default, delay, is in tests/test_throttle.py
    for _ in range(3):
        assert auth.login("admin", "wrong").status_code == 401
    assert auth.login().status_code == 401  # locked, even with the right password
    with app.app_context():
        actions = db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions.count("auth.locked") == 1
    assert actions[-1] == "auth.login_failed"


def change(auth, client, current, new, confirm=None):
    token = auth.csrf("/account/password")
    return client.post("/account/password", data={"current": current, "new": new,
                                                  "confirm": new if confirm is None else confirm,
                                                  "csrf_token": token})


@pytest.mark.parametrize("current,new,confirm,message", [
    ("wrong-password-x", "another-long-password", None, b"The current password is wrong."),
    (ADMIN_PASSWORD, "short", None, b"Use at least 12 characters."),
    (ADMIN_PASSWORD, "another-long-password", "different-long-password", b"The new passwords differ."),
])
def test_change_password_rejected(app, client, auth, current, new, confirm, message):
    auth.login()
    response = change(auth, client, current, new, confirm)
    assert response.status_code == 422
    assert message in response.data
    client.post("/logout", data={"csrf_token": auth.csrf("/")})
    assert auth.login().status_code == 302  # old password still works


def test_change_password_ends_other_sessions(app, client, auth):
    other = app.test_client()
    other_auth = AuthActions(other)
    assert other_auth.login().status_code == 302
    assert other.get("/").status_code == 200
    auth.login()
    response = change(auth, client, ADMIN_PASSWORD, "a-brand-new-password")
    assert response.status_code == 302
    assert client.get("/").status_code == 200  # this session lives on
    assert other.get("/").status_code == 302  # the other one is over
    client.post("/logout", data={"csrf_token": auth.csrf("/")})
    assert auth.login().status_code == 401
    assert auth.login("admin", "a-brand-new-password").status_code == 302


def test_first_admin_generated_password_printed_once(tmp_path, capsys):
    from tests.support import make_app

    app = make_app(tmp_path, ADMIN_PASSWORD=None, ADMIN_USER="root-admin")
    printed = capsys.readouterr().err
    assert "admin user 'root-admin' created with password: " in printed
    password = printed.split("password: ")[1].split()[0]
    assert len(password) >= 20
    with app.app_context():
        user = db.session.scalar(select(User).filter_by(username="root-admin"))
        assert user.is_admin and password not in user.password_hash
        from app.auth.admin import ensure_first_admin

        assert ensure_first_admin(app) is None  # only once
    assert "created with password" not in capsys.readouterr().err
    client = app.test_client()
    assert AuthActions(client).login("root-admin", password).status_code == 302
