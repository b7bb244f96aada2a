"""outbox of audit events still to be forwarded to syslog targets

Revision ID: 0006_audit_outbox
Revises: 0005_session_commands
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_audit_outbox"
down_revision = "0005_session_commands"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "audit_outbox",
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("target", "event_id"),
    )


def downgrade():
    op.drop_table("audit_outbox")
