"""host keys: the key a device offered on a mismatch, to accept exactly it

Revision ID: 0013_offered_host_keys
Revises: 0012_login_hardening
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0013_offered_host_keys"
down_revision = "0012_login_hardening"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
