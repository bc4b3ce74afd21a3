"""Certificate revocation lists for Direct verification, supplied by an administrator (ADR 0010)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 03:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "direct_crls",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("issuer_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("this_update", sa.DateTime(), nullable=False),
        sa.Column("next_update", sa.DateTime(), nullable=True),
        sa.Column("revoked", sa.Integer(), nullable=False),
        sa.Column("crl_pem", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("removed_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_direct_crls_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_direct_crls")),
    )
    op.create_index("ix_direct_crls_fingerprint", "direct_crls", ["tenant_id", "fingerprint"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_direct_crls_fingerprint", table_name="direct_crls")
    op.drop_table("direct_crls")
