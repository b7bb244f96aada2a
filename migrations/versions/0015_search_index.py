"""an index for the viewer's free text and the command filter: FTS5 trigram tables on SQLite, pg_trgm on PostgreSQL

Revision ID: 0015_search_index
Revises: 0014_resume_and_files

The index is not part of the trail's chain: no hashed column changes. On SQLite the FTS5 tables are
external-content (they keep only the index, the text stays in its table) and triggers keep them current.
A later batch change to audit_events or session_commands rebuilds the table and drops its triggers: such a
migration must create them again (the statements below).
"""
from alembic import op

revision = "0015_search_index"
down_revision = "0014_resume_and_files"
branch_labels = None
depends_on = None

# SQLite: (index table, indexed table, its columns).
FTS_TABLES = (("audit_search", "audit_events", ("message", "target")),
              ("command_search", "session_commands", ("text",)))
# PostgreSQL: (index name, table, column); ILIKE on these columns uses them.
TRGM_INDEXES = (("ix_audit_events_message_trgm", "audit_events", "message"),
                ("ix_audit_events_target_trgm", "audit_events", "target"),
                ("ix_session_commands_text_trgm", "session_commands", "text"))


def _fts_statements(index, table, columns):
    """Return the statements that create an external-content FTS5 table over table's columns and keep it current."""
    names = ", ".join(columns)
    new = ", ".join(f"new.{column}" for column in columns)
    old = ", ".join(f"old.{column}" for column in columns)
    add = f"INSERT INTO {index}(rowid, {names}) VALUES (new.id, {new});"
    remove = f"INSERT INTO {index}({index}, rowid, {names}) VALUES ('delete', old.id, {old});"
    return [
        # trigram: every substring of three characters or more can be found, case-folded.
        f"CREATE VIRTUAL TABLE {index} USING fts5({names}, content='{table}', content_rowid='id', tokenize='trigram')",
        f"CREATE TRIGGER {index}_insert AFTER INSERT ON {table} BEGIN {add} END",
        f"CREATE TRIGGER {index}_delete AFTER DELETE ON {table} BEGIN {remove} END",
        f"CREATE TRIGGER {index}_update AFTER UPDATE OF {names} ON {table} BEGIN {remove} {add} END",
        f"INSERT INTO {index}({index}) VALUES ('rebuild')",  # the rows already there
    ]


def upgrade():
    if op.get_bind().dialect.name == "sqlite":
        for index, table, columns in FTS_TABLES:
            for statement in _fts_statements(index, table, columns):
                op.execute(statement)
        return
    # A trusted extension since PostgreSQL 13: the database's owner may create it, no superuser needed.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, table, column in TRGM_INDEXES:
        op.execute(f"CREATE INDEX {name} ON {table} USING gin ({column} gin_trgm_ops)")


def downgrade():
    if op.get_bind().dialect.name == "sqlite":
        for index, table, _columns in FTS_TABLES:
            for suffix in ("insert", "delete", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {index}_{suffix}")
            op.execute(f"DROP TABLE IF EXISTS {index}")
        return
    # The extension stays: something else in the database may use it, and it holds no data.
    for name, _table, _column in TRGM_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
