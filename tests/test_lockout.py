"""Log-in failures: counted atomically under parallel guesses, and hostile usernames answered cleanly."""
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.extensions import db
from tests.support import AuthActions, console, csrf_from, server_app


def trail(server, action, actor):
    """Return the events of one action and actor in a live server's trail."""
    app = server_app(server)
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).filter_by(action=action, actor=actor)).all()
        db.session.expunge_all()
        db.engine.dispose()
    return rows


def guess(server, username, password):
    """Try one log-in from a fresh browser; return the status code."""
    http = requests.Session()
    token = csrf_from(http.get(server.url + "/login", timeout=10).text)
    return http.post(server.url + "/login", data={"username": username, "password": password, "csrf_token": token},
                     allow_redirects=False, timeout=30).status_code


@pytest.fixture
def lock_server(live_servers):
    """The app under gunicorn in LOCKOUT_MODE=lock (the default, delay, is in tests/test_throttle.py)."""
    return live_servers(LOCKOUT_MODE="lock")


def test_parallel_wrong_passwords_lock_the_account(lock_server):
    live_server = lock_server
    name, password = "guess-" + uuid.uuid4().hex[:6], "the-right-password"
    console(live_server, "users", "create", name, "--password", password)
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):  # three batches of 8 parallel wrong passwords, as an attacker would send them
            statuses = list(pool.map(lambda i: guess(live_server, name, f"wrong-{i}"), range(8)))
            assert statuses == [401] * 8
    assert guess(live_server, name, password) == 401  # locked (LOGIN_MAX_FAILURES=5): the right one is refused
    assert len(trail(live_server, "auth.locked", name)) == 1
    failed = trail(live_server, "auth.login_failed", name)
    assert len(failed) == 25 and failed[-1].details["reason"] == "locked"


@pytest.mark.parametrize("username", ["ad\x00min", "ad\x1bmin", "admin\x7f", "\x00"])
def test_control_characters_in_the_log_in_name_are_refused(app, client, username):
    response = AuthActions(client).login(username)
    assert response.status_code == 422 and b"A username has no control characters." in response.data
    assert "Location" not in response.headers  # not logged in


def test_nul_in_the_log_in_name_on_postgresql(pg_app):
    response = AuthActions(pg_app.test_client()).login("ad\x00min")
    assert response.status_code == 422 and b"A username has no control characters." in response.data


def test_log_in_name_ignores_case(client):
    assert AuthActions(client).login("ADMIN").status_code == 302
