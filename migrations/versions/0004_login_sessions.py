"""log-in sessions on the server; terminals remember their log-in; user ids never reused

Revision ID: 0004_login_sessions
Revises: 0003_session_terminate_flag
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_login_sessions"
down_revision = "0003_session_terminate_flag"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "login_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("source_ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoke_reason", sa.String(length=32), nullable=True),
        sa.Column("revoked_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_login_sessions_user_id", "login_sessions", ["user_id"])
    op.create_index("ix_login_sessions_expires_at", "login_sessions", ["expires_at"])
    with op.batch_alter_table("terminal_sessions") as batch:
        batch.add_column(sa.Column("login_session_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("terminate_reason", sa.String(length=32), nullable=True))
        batch.create_index("ix_terminal_sessions_login_session_id", ["login_session_id"])
    if op.get_bind().dialect.name == "sqlite":
        # AUTOINCREMENT: SQLite otherwise reuses the id of the newest deleted user.
        with op.batch_alter_table("users", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass


def downgrade():
    with op.batch_alter_table("terminal_sessions") as batch:
        batch.drop_index("ix_terminal_sessions_login_session_id")
        batch.drop_column("terminate_reason")
        batch.drop_column("login_session_id")
    op.drop_index("ix_login_sessions_expires_at", table_name="login_sessions")
    op.drop_index("ix_login_sessions_user_id", table_name="login_sessions")
    op.drop_table("login_sessions")
