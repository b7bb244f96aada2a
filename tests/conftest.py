"""Fixtures only (helpers live in tests/support.py): the app on SQLite or PostgreSQL, a client, log-in
actions, a real sshd, gunicorn, Chromium."""
import os

import pytest

from app.extensions import db
from tests.support import (CHROMIUM, WORKER, AuthActions, LiveServer, SSHServer, make_app, missing, reset_postgres,
                           worker_database)


@pytest.fixture(scope="session", autouse=True)
def _worker_database():
    """Under pytest-xdist, give this worker its own PostgreSQL database for the run, and drop it after."""
    made = bool(WORKER) and worker_database(create=True)  # no server: the PostgreSQL tests say so themselves
    yield
    if made:
        worker_database(create=False)


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
    app = make_app(tmp_path, database_url=reset_postgres())
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
