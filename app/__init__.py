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

from config import Config, ConfigError, load_secret_key, public_url_origin

from .dbtypes import iso_utc, now_utc
from .extensions import csrf, db, login_manager, migrate, sock
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


def create_app(config=None):
    """Build the app: defaults, overrides, validation, extensions, proxy, blueprints, CLI, start-up."""
    app = Flask(__name__)
    app.config.from_mapping(vars(Config()))
    app.config.update(config or {})
    _validate(app)
    _configure_logging(app)
    _init_extensions(app)
    _init_proxy(app)
    _init_requests(app)
    _init_converters(app)
    _register_blueprints(app)
    _register_cli(app)
    _startup(app)
    return app


def _validate(app):
    """Fill the secret key and reject settings that make no sense."""
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = load_secret_key(Path(app.config["INSTANCE_DIR"]))
    _create_private_sqlite(app.config["SQLALCHEMY_DATABASE_URI"])
    hops = app.config["TRUSTED_PROXY_HOPS"]
    if not isinstance(hops, int) or hops < 0:
        raise ConfigError(f"TRUSTED_PROXY_HOPS={hops!r} must be a whole number >= 0")
    if app.config.get("PUBLIC_URL"):
        app.config["PUBLIC_URL"] = public_url_origin("PUBLIC_URL", app.config["PUBLIC_URL"])
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=app.config["SESSION_TTL_HOURS"])
    from .audit.events import CATALOGUE, SEVERITY_ORDER

    from .auth.oidc import check_settings

    check_settings(app.config)  # single sign-on: LOCAL_LOGIN=off needs OIDC_ISSUER, which must be http(s)
    unknown = [word for word in app.config["ALERT_ACTIONS"] if word not in CATALOGUE and word not in SEVERITY_ORDER]
    if unknown:
        raise ConfigError(f"ALERT_ACTIONS names no such action: {', '.join(unknown)} (see docs/audit.md)")
    from .terminals.socket import InputGate

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


def _init_extensions(app):
    """Bind the extensions created in app.extensions."""
    from . import models  # noqa: F401  (every table known before anything touches the database)

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=True)
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


def _register_blueprints(app):
    """Attach the auth, devices, terminals and audit blueprints."""
    # Views are imported here, not by their packages, so models and helpers import without cycles.
    from .audit.views import bp as audit_bp
    from .auth.totp_views import bp as twofactor_bp
    from .auth.users import bp as users_bp
    from .auth.views import bp as auth_bp
    from .devices.views import bp as devices_bp
    from .devices import connection_test  # noqa: F401  (adds Test connection to the devices blueprint)
    from .terminals import socket  # noqa: F401  (adds the websocket route to the terminals blueprint)
    from .terminals import replay  # noqa: F401  (adds the session page, its .cast and the command search)
    from .terminals import retention  # noqa: F401  (answers the trail's verify and prune signals)
    from .terminals import command_filter  # noqa: F401  (answers the trail's command filter)
    from .teams.views import bp as teams_bp
    from .terminals.views import bp as terminals_bp

    for blueprint in (auth_bp, twofactor_bp, users_bp, teams_bp, devices_bp, terminals_bp, audit_bp):
        app.register_blueprint(blueprint)
    from .auth.oidc import bp as oidc_bp

    app.register_blueprint(oidc_bp)  # single sign-on; its routes answer 404 without OIDC_ISSUER
    app.add_template_filter(iso_utc, "iso_utc")
    from . import text

    text.register(app)  # `reveal`: names and messages shown with their hidden characters made visible
    from . import session_ends

    session_ends.register(app)  # why a session ended, in words: the trail and the session page
    app.add_template_global(now_utc, "now_utc")
    app.add_template_global(public_origin, "public_origin")  # the terminal page tells its origin to terminal.js


def _register_cli(app):
    """Add the `flask audit ...` and `flask users ...` commands."""
    from .audit.cli import audit_cli
    from .auth.cli import users_cli

    app.cli.add_command(audit_cli)
    app.cli.add_command(users_cli)


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
