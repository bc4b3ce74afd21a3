"""failed dashboard sign-ins in the store: the throttle is shared by every API replica

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 18:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signin_failures",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("failed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_signin_failures")),
    )
    op.create_index("ix_signin_failures_key_hash_failed_at", "signin_failures", ["key_hash", "failed_at"],
                    unique=False)
    op.create_index("ix_signin_failures_failed_at", "signin_failures", ["failed_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_signin_failures_failed_at", table_name="signin_failures")
    op.drop_index("ix_signin_failures_key_hash_failed_at", table_name="signin_failures")
    op.drop_table("signin_failures")
