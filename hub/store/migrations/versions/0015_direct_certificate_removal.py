"""Direct certificates removed, not deleted: when (a removal changes what the connectors and the
listener use, so it must move the certificates' changed-at stamp)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 02:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("direct_certificates") as batch:
        batch.add_column(sa.Column("removed_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("direct_certificates") as batch:
        batch.drop_column("removed_at")
