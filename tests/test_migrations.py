"""Migrations: apply on an empty SQLite file and on PostgreSQL, and match the models."""
import subprocess
import sys

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import app.models  # noqa: F401  (every table in the metadata)
from app.extensions import db
from tests.support import ROOT, SECRET_KEY, reset_postgres


def upgrade(url, tmp_path):
    """Run `flask db upgrade` as a newcomer would, on url."""
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": url, "SECRET_KEY": SECRET_KEY, "GATEHOUSE_INSTANCE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def check_schema(url):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            assert set(db.metadata.tables) <= tables
            differences = compare_metadata(MigrationContext.configure(conn), db.metadata)
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
