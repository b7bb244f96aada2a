"""Gatehouse: a self-hosted web SSH gateway with a tamper-evident audit trail."""
import ipaddress
import logging
import os
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import click
from flask import Flask, g, request
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from config import Config, load_secret_key

from .dbtypes import iso_utc, now_utc
from .extensions import csrf, db, login_manager, sock
from .origins import fill_short_forwarded, public_origin

MIGRATIONS_DIR = str(Path(__file__).resolve().parent.parent / "migrations")


class _SessionInterface(SecureCookieSessionInterface):
    """Mark the session cookie Secure whenever the request came over HTTPS."""

    def get_cookie_secure(self, app):
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or (request and request.is_secure)


class _RequestIdFilter(logging.Filter):
    """Stamp every log line with the id of the request it belongs to."""

    def filter(self, record):
        try:
            record.request_id = g.get("request_id", "-")
        except RuntimeError:
            record.request_id = "-"
        return True


def create_app(config=None, *, migrations=True):
    """Build the app: settings (defaults, overrides, validation), extensions, proxy, packages, templates, start-up.

    migrations=False (wsgi.py: a serving process) leaves out `flask db` and Alembic, which only the console needs.
    """
    app = Flask(__name__)
    app.config.update(vars(Config(config)))  # the environment, the overrides on top, checked once as a whole
    _derive_settings(app)
    _configure_logging(app)
    _init_extensions(app, migrations)
    _init_proxy(app)
    _init_requests(app)
    _init_converters(app)
    _init_packages(app)
    _init_templates(app)
    _startup(app)
    return app


def _derive_settings(app):
    """Fill the secret key (generated once, kept private), create a private SQLite file, derive what follows."""
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = load_secret_key(Path(app.config["INSTANCE_DIR"]))
    _create_private_sqlite(app.config["SQLALCHEMY_DATABASE_URI"])
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=app.config["SESSION_TTL_HOURS"])
    from .terminals.websocket import InputGate

    app.config["SOCK_SERVER_OPTIONS"] = {
        "ping_interval": app.config["WS_PING_SECONDS"],
        "max_message_size": app.config["WS_MAX_MESSAGE_BYTES"],
        "event_class": InputGate,  # stops reading a browser whose input the device does not take
    }


def _create_private_sqlite(uri):
    """Create a missing SQLite file 0600 (its folder 0700) before SQLite creates it with the umask's mode."""
    path = uri[len("sqlite:///"):].split("?", 1)[0] if uri.startswith("sqlite:///") else ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # an empty file is an empty database
    except FileExistsError:
        pass  # SQLite gives its -wal and -shm files the mode of this one


class _UtcFormatter(logging.Formatter):
    """Stamp log lines in UTC ISO-8601 with milliseconds and Z, like the audit trail, whatever TZ says."""

    def formatTime(self, record, datefmt=None):
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _configure_logging(app):
    """Log to stderr in UTC with the request id; never a secret (nothing here formats one)."""
    root = logging.getLogger("gatehouse")
    root.setLevel(app.config["LOG_LEVEL"])
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"))
        handler.addFilter(_RequestIdFilter())
        root.addHandler(handler)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    """Use WAL (readers never wait for the writer), a busy timeout and foreign keys on SQLite."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def _init_extensions(app, migrations):
    """Bind the extensions created in app.extensions (and Flask-Migrate's `flask db`, when asked)."""
    from . import models  # noqa: F401  (every table known before anything touches the database)

    db.init_app(app)
    if migrations:
        from flask_migrate import Migrate  # Alembic: about 10 MiB that a serving worker never uses

        Migrate(app, db, directory=MIGRATIONS_DIR, render_as_batch=True)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = None
    login_manager.session_protection = "basic"
    csrf.init_app(app)
    sock.init_app(app)
    app.session_interface = _SessionInterface()


def _init_proxy(app):
    """Trust X-Forwarded-For/Proto/Host/Port only from the configured number of reverse proxies."""
    hops = app.config["TRUSTED_PROXY_HOPS"]
    if hops:
        fixed = ProxyFix(_keep_valid_address(app.wsgi_app), x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
        app.wsgi_app = fill_short_forwarded(fixed, hops)


def _keep_valid_address(wsgi_app):
    """Fall back to the direct peer when the forwarded address is not an IP (a garbage header)."""

    def middleware(environ, start_response):
        try:
            ipaddress.ip_address(environ.get("REMOTE_ADDR", ""))
        except ValueError:
            environ["REMOTE_ADDR"] = environ.get("werkzeug.proxy_fix.orig", {}).get("REMOTE_ADDR")
        return wsgi_app(environ, start_response)

    return middleware


def _init_requests(app):
    """Give each request an id and safe headers, and render errors as pages."""

    @app.before_request
    def assign_request_id():
        g.request_id = uuid.uuid4().hex

    @app.after_request
    def security_headers(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        if request.endpoint and request.endpoint != "static":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    from .errors import render_error  # the app's own page for people, a short body for scripts and htmx

    for code in (400, 403, 404, 405, 413, 422, 429, 500, 503):
        app.register_error_handler(code, render_error)


class _BoundedIntConverter(IntegerConverter):
    """An <int:> URL part no larger than a 64-bit id: a longer number is a 404, not a database error."""

    def __init__(self, url_map, fixed_digits=0, min=None, max=2**63 - 1, signed=False):
        super().__init__(url_map, fixed_digits, min, max, signed)


def _init_converters(app):
    """Bound every <int:> URL part before the blueprints' routes are built with it."""
    app.url_map.converters["int"] = _BoundedIntConverter


def _init_packages(app):
    """Wire each package in: its blueprints and the routes added to them, CLI groups and signal receivers."""
    # Each package's init_app imports its own views: a package imported for its models pulls in no views.
    from . import access, audit, auth, devices, operations, recording, teams, terminals

    operations.init_app(app, MIGRATIONS_DIR)  # /healthz, /readyz, /metrics
    access.init_app(app)  # the trail's visibility rules that grants, sessions and devices add
    auth.init_app(app)
    teams.init_app(app)
    devices.init_app(app)
    terminals.init_app(app)
    audit.init_app(app)
    recording.init_app(app)  # answers the trail's verify, prune and bundle signals


def _init_templates(app):
    """Give every template the app-wide filters and globals."""
    from . import session_ends, text

    app.add_template_filter(iso_utc, "iso_utc")
    text.init_app(app)  # `reveal`: names and messages shown with their hidden characters made visible
    session_ends.init_app(app)  # why a session ended, in words: the trail and the session page
    app.add_template_global(now_utc, "now_utc")
    app.add_template_global(public_origin, "public_origin")  # the terminal page tells its origin to terminal.js


def _startup(app):
    """Create the first admin once the schema exists; later work starts in gunicorn's worker hook."""
    from .auth.admin import ensure_first_admin

    with app.app_context():
        if not inspect(db.engine).has_table("audit_chain_head"):
            # The flask command line loads the app for `flask db upgrade` too: the hint would name itself there.
            if click.get_current_context(silent=True) is None:
                logging.getLogger("gatehouse").info("database has no schema yet: run `flask db upgrade`")
            return
        ensure_first_admin(app)
