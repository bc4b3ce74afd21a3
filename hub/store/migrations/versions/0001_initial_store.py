"""initial store: tenants, FHIR resources, history, search index

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23 11:12:04.620618
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "resource_versions",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("content", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint(
            "tenant_id", "resource_type", "id", "version_id", name=op.f("pk_resource_versions")
        ),
    )
    with op.batch_alter_table("resource_versions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_resource_versions_type_updated", ["tenant_id", "resource_type", "last_updated"], unique=False
        )

    op.create_table(
        "search_dates",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("low", sa.DateTime(), nullable=False),
        sa.Column("high", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_search_dates")),
    )
    with op.batch_alter_table("search_dates", schema=None) as batch_op:
        batch_op.create_index(
            "ix_search_dates_lookup", ["tenant_id", "resource_type", "param", "low", "high"], unique=False
        )
        batch_op.create_index(
            "ix_search_dates_owner", ["tenant_id", "resource_type", "resource_id"], unique=False
        )

    op.create_table(
        "search_references",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=64), nullable=True),
        sa.Column("target_id", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_search_references")),
    )
    with op.batch_alter_table("search_references", schema=None) as batch_op:
        batch_op.create_index(
            "ix_search_references_lookup",
            ["tenant_id", "resource_type", "param", "target_id", "target_type"],
            unique=False,
        )
        batch_op.create_index(
            "ix_search_references_owner", ["tenant_id", "resource_type", "resource_id"], unique=False
        )

    op.create_table(
        "search_tokens",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("system", sa.String(length=255), nullable=True),
        sa.Column("code", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_search_tokens")),
    )
    with op.batch_alter_table("search_tokens", schema=None) as batch_op:
        batch_op.create_index(
            "ix_search_tokens_lookup", ["tenant_id", "resource_type", "param", "code", "system"], unique=False
        )
        batch_op.create_index(
            "ix_search_tokens_owner", ["tenant_id", "resource_type", "resource_id"], unique=False
        )

    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
    )
    op.create_table(
        "resources",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("content", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_resources_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", "resource_type", "id", name=op.f("pk_resources")),
    )
    with op.batch_alter_table("resources", schema=None) as batch_op:
        batch_op.create_index(
            "ix_resources_type_updated", ["tenant_id", "resource_type", "last_updated"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("resources", schema=None) as batch_op:
        batch_op.drop_index("ix_resources_type_updated")

    op.drop_table("resources")
    op.drop_table("tenants")
    with op.batch_alter_table("search_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_search_tokens_owner")
        batch_op.drop_index("ix_search_tokens_lookup")

    op.drop_table("search_tokens")
    with op.batch_alter_table("search_references", schema=None) as batch_op:
        batch_op.drop_index("ix_search_references_owner")
        batch_op.drop_index("ix_search_references_lookup")

    op.drop_table("search_references")
    with op.batch_alter_table("search_dates", schema=None) as batch_op:
        batch_op.drop_index("ix_search_dates_owner")
        batch_op.drop_index("ix_search_dates_lookup")

    op.drop_table("search_dates")
    with op.batch_alter_table("resource_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_resource_versions_type_updated")

    op.drop_table("resource_versions")
