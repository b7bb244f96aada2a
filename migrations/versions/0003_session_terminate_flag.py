"""terminal sessions: an admin's request to terminate

Revision ID: 0003_session_terminate_flag
Revises: 0002_audit_outcome_index
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_session_terminate_flag"
down_revision = "0002_audit_outcome_index"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("terminal_sessions") as batch:
        batch.add_column(sa.Column("terminate_requested", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade():
    with op.batch_alter_table("terminal_sessions") as batch:
        batch.drop_column("terminate_requested")
