"""What load balancers and monitoring ask: /healthz (the process answers), /readyz (the database answers and its
schema is current) and /metrics (Prometheus, for a scraper that shows METRICS_TOKEN). No log-in, no session."""
import ast
import hmac
from functools import lru_cache
from pathlib import Path

from flask import Blueprint, abort, current_app, request
from sqlalchemy import inspect, text

from .extensions import csrf, db
from .metrics import exposition

bp = Blueprint("operations", __name__)


def init_app(app, migrations_dir):
    """Serve the three routes, outside CSRF (they only read) and outside the log-in."""
    app.config["MIGRATIONS_DIR"] = migrations_dir
    csrf.exempt(bp)
    app.register_blueprint(bp)


VERSION_TABLE = "alembic_version"  # where Alembic keeps the database's schema revision


@lru_cache(maxsize=4)
def heads(migrations_dir):
    """The newest schema revisions this code knows: those no migration names as its down_revision (read once per
    process from the migration files' assignments, as Alembic reads them, without loading Alembic in a worker)."""
    revisions, parents = set(), set()
    for path in Path(migrations_dir, "versions").glob("*.py"):
        names = _assignments(path, ("revision", "down_revision"))
        revisions.add(names["revision"])
        down = names.get("down_revision")
        parents.update(down if isinstance(down, (tuple, list)) else [] if down is None else [down])
    return frozenset(revisions - parents)


def _assignments(path, names):
    """The literal values a module assigns to these names at its top level."""
    found = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = getattr(node, "targets", None) or [getattr(node, "target", None)]  # x = … or x: str = …
        for target in targets:
            if isinstance(target, ast.Name) and target.id in names and node.value is not None:
                found[target.id] = ast.literal_eval(node.value)
    return found


def _current_heads(connection):
    """The schema revisions the database says it is at (none before its first migration)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return frozenset()
    return frozenset(connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())


@bp.get("/healthz")
def healthz():
    """The process answers: nothing else is asked, so a slow database does not get a node restarted."""
    return "ok\n", 200, {"Content-Type": "text/plain; charset=utf-8"}


@bp.get("/readyz")
def readyz():
    """Ready for traffic: the database answers and its schema is the one this code expects."""
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            current = _current_heads(connection)
    except Exception as exc:
        current_app.logger.warning("not ready: database does not answer: %s", type(exc).__name__)
        return _plain("not ready: the database does not answer", 503)
    expected = heads(current_app.config["MIGRATIONS_DIR"])
    if current != expected:
        return _plain(f"not ready: database schema {', '.join(sorted(current)) or 'none'}, "
                      f"expected {', '.join(sorted(expected))} (run `flask db upgrade`)", 503)
    return _plain("ready", 200)


@bp.get("/metrics")
def metrics():
    """Prometheus metrics, for a scraper that sends `Authorization: Bearer <METRICS_TOKEN>`; unset, not served."""
    token = current_app.config["METRICS_TOKEN"]
    if not token:
        abort(404)
    sent = request.headers.get("Authorization", "")
    if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        return _plain("metrics need the bearer token of METRICS_TOKEN", 401, {"WWW-Authenticate": "Bearer"})
    return exposition(), 200, {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}


def _plain(message, status, headers=None):
    """A one-line text answer, for scripts and probes."""
    return message + "\n", status, {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}
