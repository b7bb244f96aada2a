"""grants cover the devices of owners an admin chose

Revision ID: 0011_grant_owners
Revises: 0010_devices_teams
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0011_grant_owners"
down_revision = "0010_devices_teams"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
