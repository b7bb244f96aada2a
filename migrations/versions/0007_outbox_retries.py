"""retries with back-off in the outbox, for the alert webhook

Revision ID: 0007_outbox_retries
Revises: 0006_audit_outbox
"""
import sqlalchemy as sa
from alembic import op

revision = "0007_outbox_retries"
down_revision = "0006_audit_outbox"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("audit_outbox") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_error", sa.String(length=200), nullable=True))


def downgrade():
    with op.batch_alter_table("audit_outbox") as batch:
        batch.drop_column("last_error")
        batch.drop_column("next_attempt_at")
        batch.drop_column("attempts")
