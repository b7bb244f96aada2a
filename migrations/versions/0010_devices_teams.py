"""devices at scale (folder, tags, favourites, last use, port check) and shared access (teams, grants)

Revision ID: 0010_devices_teams
Revises: 0009_identity
"""
import sqlalchemy as sa
from alembic import op

revision = "0010_devices_teams"
down_revision = "0009_identity"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("folder", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("port_open", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("port_checked_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_devices_folder", ["folder"])
    op.create_table(
        "device_tags",
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tag", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "tag"),
    )
    op.create_index("ix_device_tags_tag", "device_tags", ["tag"])
    op.create_table(
        "device_favourites",
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "device_id"),
    )
    op.create_table(
        "teams",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "team_members",
        sa.Column("team_id", sa.Integer(), sa.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.PrimaryKeyConstraint("team_id", "user_id"),
    )
    op.create_index("ix_team_members_user_id", "team_members", ["user_id"])
    op.create_table(
        "access_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), sa.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("shares_trail", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("team_id", "kind", "value"),
    )
    op.create_index("ix_access_grants_team_id", "access_grants", ["team_id"])


def downgrade():
    op.drop_index("ix_access_grants_team_id", table_name="access_grants")
    op.drop_table("access_grants")
    op.drop_index("ix_team_members_user_id", table_name="team_members")
    op.drop_table("team_members")
    op.drop_table("teams")
    op.drop_table("device_favourites")
    op.drop_index("ix_device_tags_tag", table_name="device_tags")
    op.drop_table("device_tags")
    with op.batch_alter_table("devices") as batch:
        batch.drop_index("ix_devices_folder")
        batch.drop_column("port_checked_at")
        batch.drop_column("port_open")
        batch.drop_column("last_used_at")
        batch.drop_column("folder")
