"""Direct certificates, keys and trust anchors per address, outside the connector config

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 01:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "direct_certificates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=254), nullable=False),
        sa.Column("trust_anchor", sa.Boolean(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("not_after", sa.DateTime(), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.Column("key_encrypted", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name=op.f("fk_direct_certificates_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_direct_certificates")),
    )
    op.create_index("ix_direct_certificates_address", "direct_certificates", ["tenant_id", "address", "fingerprint"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("ix_direct_certificates_address", table_name="direct_certificates")
    op.drop_table("direct_certificates")
