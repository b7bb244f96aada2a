"""log-ins: password must change, used OIDC states

Revision ID: 0012_login_hardening
Revises: 0011_grant_owners
"""
import sqlalchemy as sa
from alembic import op

revision = "0012_login_hardening"
down_revision = "0011_grant_owners"
branch_labels = None
depends_on = None


def upgrade():
    # A plain ADD COLUMN, not a batch: on SQLite a batch copies and drops the users table, and dropping it
    # deletes (ON DELETE CASCADE) every device, grant owner and log-in of every user.
    op.add_column("users", sa.Column("must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "oidc_used_states",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("state_hash"),
    )
    op.create_index("ix_oidc_used_states_expires_at", "oidc_used_states", ["expires_at"])


def downgrade():
    op.drop_index("ix_oidc_used_states_expires_at", table_name="oidc_used_states")
    op.drop_table("oidc_used_states")
    op.drop_column("users", "must_change_password")  # plain, for the reason above (SQLite 3.35+ drops a column)
