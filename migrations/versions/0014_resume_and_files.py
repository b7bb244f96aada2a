"""terminal sessions that are detached (kept for a resume); devices that refuse file transfer

Revision ID: 0014_resume_and_files
Revises: 0013_offered_host_keys
"""
import sqlalchemy as sa
from alembic import op

revision = "0014_resume_and_files"
down_revision = "0013_offered_host_keys"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("terminal_sessions") as batch:
        batch.add_column(sa.Column("detached_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("allow_file_transfer", sa.Boolean(), nullable=False,
                                   server_default=sa.true()))


def downgrade():
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("allow_file_transfer")
    with op.batch_alter_table("terminal_sessions") as batch:
        batch.drop_column("detached_at")
