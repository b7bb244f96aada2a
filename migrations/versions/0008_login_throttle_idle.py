"""failed log-ins counted by address and by account name; the last activity of a log-in (idle timeout)

Revision ID: 0008_login_throttle_idle
Revises: 0007_outbox_retries
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_login_throttle_idle"
down_revision = "0007_outbox_retries"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "login_throttle",
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("checking_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kind", "key"),
    )
    op.create_index("ix_login_throttle_blocked_until", "login_throttle", ["blocked_until"])
    with op.batch_alter_table("login_sessions") as batch:
        batch.add_column(sa.Column("active_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE login_sessions SET active_at = last_seen_at")
    with op.batch_alter_table("login_sessions") as batch:
        batch.alter_column("active_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.create_index("ix_login_sessions_active_at", ["active_at"])


def downgrade():
    with op.batch_alter_table("login_sessions") as batch:
        batch.drop_index("ix_login_sessions_active_at")
        batch.drop_column("active_at")
    op.drop_index("ix_login_throttle_blocked_until", table_name="login_throttle")
    op.drop_table("login_throttle")
