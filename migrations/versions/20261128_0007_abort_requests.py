"""Abort requests: ``rlm abort`` marks its target's top node, so workers stop that subtree's model calls.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in orchestrator.store.models (a migration does not import the models it outlives).
ABORT_INDEX = "ix_nodes_abort_requested"
ABORT_WHERE = "abort_requested_at IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("abort_requested_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        ABORT_INDEX,
        "nodes",
        ["run_id"],
        sqlite_where=sa.text(ABORT_WHERE),
        postgresql_where=sa.text(ABORT_WHERE),
    )


def downgrade() -> None:
    op.drop_index(ABORT_INDEX, table_name="nodes")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("abort_requested_at")
