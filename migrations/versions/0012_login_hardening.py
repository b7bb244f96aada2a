"""log-ins: password must change, used OIDC states

Revision ID: 0012_login_hardening
Revises: 0011_grant_owners
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0012_login_hardening"
down_revision = "0011_grant_owners"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
