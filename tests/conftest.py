"""Fixtures only (helpers live in tests/support.py): the app on SQLite or PostgreSQL, a client, log-in
actions, a real sshd, gunicorn, Chromium."""
import functools
import os

import pytest

from app.extensions import db
from tests.support import (CHROMIUM, WAIT_SECONDS, AuthActions, LiveServers, SSHServer, fresh_postgres,
                           make_app, missing, worker_database)


@pytest.fixture(scope="session", autouse=True)
def _worker_database():
    """Give this test process (an xdist worker, or a run without xdist) its own PostgreSQL database, dropped after."""
    made = worker_database(create=True)  # no server: the PostgreSQL tests say so themselves
    yield
    if made:
        worker_database(create=False)


@pytest.fixture(scope="session", autouse=True)
def _passwords_hashed_once():
    """Hash each password once per test process, not at every first admin, new user and log-in of every test.

    scrypt costs a tenth of a second of CPU on purpose, and the tests in this process create and log in users
    thousands of times: that was half their CPU time. Werkzeug's hashing step (a pure function of method, salt and
    password) is memoised and the salt fixed, so a password always hashes to the same real scrypt hash; the app's
    code runs unchanged. Servers under gunicorn, other processes, hash as in production.
    """
    from werkzeug import security

    hash_internal, gen_salt = security._hash_internal, security.gen_salt
    security._hash_internal = functools.lru_cache(maxsize=None)(hash_internal)
    security.gen_salt = lambda length: "s" * length
    yield
    security._hash_internal, security.gen_salt = hash_internal, gen_salt


@pytest.fixture(autouse=True)
def _restore_environment():
    """Snapshot and restore the environment so no test leaks configuration into the next."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def pg_app(tmp_path):
    app = make_app(tmp_path, database_url=fresh_postgres())
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_app(request):
    """The app on SQLite, then on PostgreSQL."""
    return request.getfixturevalue("app" if request.param == "sqlite" else "pg_app")


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def admin(client):
    """A test client logged in as the first admin (on the app the module's `client` is made from)."""
    assert AuthActions(client).login().status_code == 302
    return client


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A real OpenSSH sshd on 127.0.0.1 with password and key auth for a throw-away user."""
    server = SSHServer(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture
def live_servers(tmp_path):
    """Start app servers for one test: `live_servers(**settings)`; all are stopped when the test is over."""
    with LiveServers(tmp_path / "servers") as servers:
        yield servers.start


@pytest.fixture(scope="module")
def module_live_servers(tmp_path_factory):
    """Start app servers that a module's tests share; all are stopped when the module is over."""
    with LiveServers(tmp_path_factory.mktemp("servers")) as servers:
        yield servers.start


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """The app under gunicorn's gevent worker on a free port, SQLite in a temp folder, shared by the whole run."""
    with LiveServers(tmp_path_factory.mktemp("live")) as servers:
        yield servers.start()


@pytest.fixture(scope="session")
def browser():
    """A real headless Chromium driven by Playwright; every context it makes waits up to WAIT_SECONDS."""
    if not os.path.exists(CHROMIUM):
        missing("Chromium (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_SECONDS * 1000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        browser.new_context = _waiting_contexts(browser.new_context)
        yield browser
        browser.close()


def _waiting_contexts(new_context):
    """Wrap Browser.new_context so that each context's waits (clicks, wait_for, navigation) share one ceiling."""

    def new_waiting_context(**options):
        context = new_context(**options)
        context.set_default_timeout(WAIT_SECONDS * 1000)
        context.on("page", _answer_dialogs)
        return context

    return new_waiting_context


def _answer_dialogs(page):
    """Leave a page that asks before it is left (page.leave_questions counts them); dismiss any other dialog."""
    page.leave_questions = []

    def answer(dialog):
        if dialog.type == "beforeunload":
            page.leave_questions.append(dialog.message)
            dialog.accept()
        else:
            dialog.dismiss()

    page.on("dialog", answer)


@pytest.fixture
def page(browser):
    """A fresh browser context and page (own cookies)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    yield page
    context.close()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End a run that skipped real parts with one line naming them and how to install them: its very last line."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    parts = set()
    for report in reporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if reason.endswith(" is not available on this machine"):
            parts.add(reason.removeprefix("Skipped: ").removesuffix(" is not available on this machine"))
    if parts:  # after pytest's own summary and counts, where nobody scrolls past it
        reporter.write_line(f"INCOMPLETE RUN: tests were skipped for lack of {'; '.join(sorted(parts))} "
                            "(as root, `bash .ci/run` installs everything)", yellow=True, bold=True)
