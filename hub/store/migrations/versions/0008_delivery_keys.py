"""delivery order across dead letters and replays; resolved dead letters; job lookups by key

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_jobs") as batch:
        batch.add_column(sa.Column("ordering_seq", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("held_by", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("resolved_by", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("resolved_at", sa.DateTime(), nullable=True))
    op.create_index("ix_delivery_jobs_replay_of", "delivery_jobs", ["replay_of"], unique=False)
    op.create_index("ix_delivery_jobs_idempotency_key", "delivery_jobs", ["idempotency_key"], unique=False)
    # every job so far keeps its place; a dead job whose direct replay was delivered is resolved
    op.execute("UPDATE delivery_jobs SET ordering_seq = id")
    op.execute(
        "UPDATE delivery_jobs SET resolved_by = (SELECT MIN(r.id) FROM delivery_jobs r"
        " WHERE r.replay_of = delivery_jobs.id AND r.status = 'succeeded'),"
        " resolved_at = (SELECT MIN(r.finished_at) FROM delivery_jobs r"
        " WHERE r.replay_of = delivery_jobs.id AND r.status = 'succeeded')"
        " WHERE status = 'dead'"
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_jobs_idempotency_key", table_name="delivery_jobs")
    op.drop_index("ix_delivery_jobs_replay_of", table_name="delivery_jobs")
    with op.batch_alter_table("delivery_jobs") as batch:
        batch.drop_column("resolved_at")
        batch.drop_column("resolved_by")
        batch.drop_column("held_by")
        batch.drop_column("ordering_seq")
