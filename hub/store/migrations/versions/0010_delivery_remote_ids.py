"""the partner's id of what a delivery made (a vendor fax id), to apply the partner's later status to it

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_jobs") as batch:
        batch.add_column(sa.Column("remote_id", sa.String(length=200), nullable=True))
    op.create_index("ix_delivery_jobs_remote_id", "delivery_jobs", ["connector_id", "remote_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_delivery_jobs_remote_id", table_name="delivery_jobs")
    with op.batch_alter_table("delivery_jobs") as batch:
        batch.drop_column("remote_id")
