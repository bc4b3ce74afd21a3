"""dashboard sessions kept in the store (sign-out ends a session on every replica)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("sid_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=100), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("signed_in_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_dashboard_sessions_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("sid_hash", name=op.f("pk_dashboard_sessions")),
    )
    op.create_index("ix_dashboard_sessions_signed_in_at", "dashboard_sessions", ["signed_in_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_dashboard_sessions_signed_in_at", table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")
