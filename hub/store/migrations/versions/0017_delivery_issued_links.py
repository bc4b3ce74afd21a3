"""Delivery jobs keep the links a partner issued with an accepted send (encrypted), e.g. a
patient's sign-in link to the home exercise program vendor

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 04:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_jobs") as batch:
        batch.add_column(sa.Column("issued_links", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("delivery_jobs") as batch:
        batch.drop_column("issued_links")
