"""Fixtures: the app on SQLite or PostgreSQL, a client, log-in actions, a real sshd, gunicorn, Chromium."""
import os
import re

import flask_migrate
import pytest
import sqlalchemy as sa

from app import create_app
from app.auth.admin import ensure_first_admin
from app.extensions import db
from tests.support import ADMIN_PASSWORD, CHROMIUM, SECRET_KEY, LiveServer, SSHServer, csrf_from, missing

PG_URL = os.environ.get("GATEHOUSE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def _restore_environment():
    """Snapshot and restore the environment so no test leaks configuration into the next."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def make_app(tmp_path, database_url=None, **overrides):
    """Create the app on a fresh database, migrated to head, with the first admin."""
    config = {
        "TESTING": True, "SECRET_KEY": SECRET_KEY, "INSTANCE_DIR": str(tmp_path),
        "SQLALCHEMY_DATABASE_URI": database_url or f"sqlite:///{tmp_path / 'test.db'}",
        "ADMIN_USER": "admin", "ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    config.update(overrides)
    app = create_app(config)
    with app.app_context():
        flask_migrate.upgrade()
        ensure_first_admin(app)
    return app


def reset_postgres(url=PG_URL):
    """Empty the test database on PostgreSQL, or skip/fail when no server answers."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
    except sa.exc.OperationalError:
        missing("PostgreSQL on 127.0.0.1:5432")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def pg_app(tmp_path):
    app = make_app(tmp_path, database_url=reset_postgres())
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class AuthActions:
    """Log in and out through the real forms, CSRF token included."""

    def __init__(self, client):
        self._client = client

    def csrf(self, path="/login"):
        return csrf_from(self._client.get(path).get_data(as_text=True))

    def login(self, username="admin", password=ADMIN_PASSWORD, **kwargs):
        token = self.csrf("/login")
        return self._client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                                 **kwargs)

    def logout(self):
        token = self.csrf("/")
        return self._client.post("/logout", data={"csrf_token": token})


@pytest.fixture
def auth(client):
    return AuthActions(client)


def logged_in_user(app, username, password="user-password-long", admin=False):
    """Create a user and return a test client logged in as them."""
    from app.auth.models import User

    with app.app_context():
        user = User(username=username, is_admin=admin)
        user.set_password(password)
        db.session.add(user)
        db.session.commit()
    client = app.test_client()
    assert AuthActions(client).login(username, password).status_code == 302
    return client


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A real OpenSSH sshd on 127.0.0.1 with password and key auth for a throw-away user."""
    server = SSHServer(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """The app under gunicorn's gevent worker on a free port, SQLite in a temp folder."""
    server = LiveServer(tmp_path_factory.mktemp("live")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    """A real headless Chromium driven by Playwright."""
    if not os.path.exists(CHROMIUM):
        missing("Chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh browser context and page (own cookies)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10000)
    yield page
    context.close()


def browser_login(page, server, username="admin", password=ADMIN_PASSWORD):
    """Log in through the real page."""
    page.goto(server.url + "/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(server.url) + "/$"))
