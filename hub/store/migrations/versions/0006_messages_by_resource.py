"""messages by resource (what a partner was last sent about a resource)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 14:55:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_messages_resource", "messages", ["tenant_id", "resource_type", "resource_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_messages_resource", table_name="messages")
