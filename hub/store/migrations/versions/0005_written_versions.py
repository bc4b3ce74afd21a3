"""versions the hub wrote to partners (poll echo suppression)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 14:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "written_versions",
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("written_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["connector_id"], ["connector_instances.id"],
            name=op.f("fk_written_versions_connector_id_connector_instances"),
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_written_versions_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("connector_id", "external_id", name=op.f("pk_written_versions")),
    )
    op.create_index("ix_written_versions_written_at", "written_versions", ["written_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_written_versions_written_at", table_name="written_versions")
    op.drop_table("written_versions")
