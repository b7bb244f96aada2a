"""host keys: the key a device offered on a mismatch, to accept exactly it

Revision ID: 0013_offered_host_keys
Revises: 0012_login_hardening
"""
import sqlalchemy as sa
from alembic import op

revision = "0013_offered_host_keys"
down_revision = "0012_login_hardening"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "offered_host_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("key_type", sa.String(length=64), nullable=False),
        sa.Column("key_base64", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=128), nullable=False),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("offered_to", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("host", "port", "fingerprint"),
    )


def downgrade():
    op.drop_table("offered_host_keys")
