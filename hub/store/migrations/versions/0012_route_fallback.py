"""fallback chains of routes: the connectors tried after a route's own, in order (ADR 0011)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 01:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("routes") as batch:
        batch.add_column(sa.Column("fallback", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("routes") as batch:
        batch.drop_column("fallback")
