"""Migrations: apply on an empty SQLite file and on PostgreSQL, and match the models."""
import subprocess
import sys

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import app.models  # noqa: F401  (every table in the metadata)
from app.audit.search_index import include_object
from app.extensions import db
from tests.support import ROOT, SECRET_KEY, reset_postgres


def upgrade(url, tmp_path, revision="head"):
    """Run `flask db upgrade` as a newcomer would, on url (to revision)."""
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": url, "SECRET_KEY": SECRET_KEY, "GATEHOUSE_INSTANCE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade", revision], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def check_schema(url):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            assert set(db.metadata.tables) <= tables
            differences = compare_metadata(MigrationContext.configure(conn, opts={"include_object": include_object}),
                                           db.metadata)
            head = conn.execute(sa.text("SELECT last_id, last_hash FROM audit_chain_head WHERE id = 1")).one()
    finally:
        engine.dispose()
    assert differences == [], differences  # the migrations create exactly what the models declare
    assert tuple(head) == (0, "0" * 64)


def test_upgrade_on_empty_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade(url, tmp_path)
    check_schema(url)
    upgrade(url, tmp_path)  # a second run changes nothing


def test_upgrade_on_postgresql(tmp_path):
    url = reset_postgres()
    upgrade(url, tmp_path)
    check_schema(url)


def test_upgrading_sqlite_keeps_the_rows_below_a_rebuilt_table(tmp_path):
    """A batch change rebuilds users on SQLite; the rebuild must not cascade to the users' devices."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, tmp_path, "0008_login_throttle_idle")  # before 0009 rebuilt the users table
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.exec_driver_sql(
                "INSERT INTO users (id, username, password_hash, is_admin, disabled, session_epoch, failed_logins,"
                " created_at, password_changed_at) VALUES (7, 'alice', 'x', 0, 0, 0, 0, '2026-01-01', '2026-01-01')")
            conn.exec_driver_sql(
                "INSERT INTO devices (owner_id, name, host, port, username, auth_type, created_at, updated_at)"
                " VALUES (7, 'web1', '127.0.0.1', 22, 'root', 'password', '2026-01-01', '2026-01-01')")
        upgrade(url, tmp_path)
        with engine.connect() as conn:
            devices = conn.exec_driver_sql("SELECT name, owner_id FROM devices").all()
            owners = conn.exec_driver_sql("SELECT username FROM users WHERE id = 7").scalars().all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in devices] == [("web1", 7)]
    assert owners == ["alice"]
