"""billing state of claims: status, findings, amounts, the file that carried each (ADR 0013)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 02:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "billing_claims",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("claim_id", sa.String(length=64), nullable=False),
        sa.Column("patient_control_number", sa.String(length=20), nullable=False),
        sa.Column("encounter_id", sa.String(length=64), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("discipline", sa.String(length=3), nullable=True),
        sa.Column("payer_id", sa.String(length=80), nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_detail", sa.Text(), nullable=True),
        sa.Column("findings", sa.Text(), nullable=True),
        sa.Column("frequency_code", sa.String(length=1), nullable=False),
        sa.Column("charge_cents", sa.Integer(), nullable=False),
        sa.Column("paid_cents", sa.Integer(), nullable=True),
        sa.Column("patient_responsibility_cents", sa.Integer(), nullable=True),
        sa.Column("service_from", sa.DateTime(), nullable=True),
        sa.Column("service_to", sa.DateTime(), nullable=True),
        sa.Column("file_message_id", sa.String(length=36), nullable=True),
        sa.Column("interchange_control", sa.Integer(), nullable=True),
        sa.Column("transaction_control", sa.Integer(), nullable=True),
        sa.Column("payer_claim_number", sa.String(length=50), nullable=True),
        sa.Column("claim_response_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(), nullable=True),
        sa.Column("paid_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_billing_claims_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_claims")),
    )
    op.create_index("uq_billing_claims_claim", "billing_claims", ["tenant_id", "claim_id"], unique=True)
    op.create_index("uq_billing_claims_pcn", "billing_claims", ["tenant_id", "patient_control_number"], unique=True)
    op.create_index("ix_billing_claims_status", "billing_claims", ["tenant_id", "status"])
    op.create_index("ix_billing_claims_file", "billing_claims", ["file_message_id"])
    op.create_index("ix_billing_claims_patient", "billing_claims", ["tenant_id", "patient_id", "service_from"])


def downgrade() -> None:
    for name in ("ix_billing_claims_patient", "ix_billing_claims_file", "ix_billing_claims_status",
                 "uq_billing_claims_pcn", "uq_billing_claims_claim"):
        op.drop_index(name, table_name="billing_claims")
    op.drop_table("billing_claims")
