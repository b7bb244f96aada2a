"""commands typed in terminal sessions, read from the screen

Revision ID: 0005_session_commands
Revises: 0004_login_sessions
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_session_commands"
down_revision = "0004_login_sessions"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "session_commands",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("offset_s", sa.Float(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["terminal_sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_session_commands_session_id", "session_commands", ["session_id"])
    op.create_index("ix_session_commands_occurred_at", "session_commands", ["occurred_at"])


def downgrade():
    op.drop_table("session_commands")
