"""audit viewer: index for the outcome filter

Revision ID: 0002_audit_outcome_index
Revises: 2b8c9b6661ca
"""
from alembic import op

revision = "0002_audit_outcome_index"
down_revision = "2b8c9b6661ca"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_audit_events_outcome_id", "audit_events", ["outcome", "id"])


def downgrade():
    op.drop_index("ix_audit_events_outcome_id", table_name="audit_events")
