"""X12 control numbers (ISA13, GS06, ST02) per tenant, sender id and kind, so they never repeat

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 02:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "x12_control_numbers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name=op.f("fk_x12_control_numbers_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_x12_control_numbers")),
    )
    op.create_index("ix_x12_control_numbers_key", "x12_control_numbers", ["tenant_id", "sender", "kind"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_x12_control_numbers_key", table_name="x12_control_numbers")
    op.drop_table("x12_control_numbers")
