"""grants cover the devices of owners an admin chose

Revision ID: 0011_grant_owners
Revises: 0010_devices_teams
"""
import sqlalchemy as sa
from alembic import op

revision = "0011_grant_owners"
down_revision = "0010_devices_teams"
branch_labels = None
depends_on = None

# Each grant keeps exactly what it covered before: the owners of the devices in its folder or with its tag today.
_OWNERS_TODAY = """
INSERT INTO grant_owners (grant_id, user_id)
SELECT g.id, d.owner_id FROM access_grants g JOIN devices d ON g.kind = 'folder' AND d.folder = g.value
UNION
SELECT g.id, d.owner_id FROM access_grants g JOIN device_tags t ON g.kind = 'tag' AND t.tag = g.value
JOIN devices d ON d.id = t.device_id
"""


def upgrade():
    op.create_table(
        "grant_owners",
        sa.Column("grant_id", sa.Integer(), sa.ForeignKey("access_grants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.PrimaryKeyConstraint("grant_id", "user_id"),
    )
    op.create_index("ix_grant_owners_user_id", "grant_owners", ["user_id"])
    op.execute(_OWNERS_TODAY)


def downgrade():
    op.drop_index("ix_grant_owners_user_id", table_name="grant_owners")
    op.drop_table("grant_owners")
