"""Retention: when a run's steps, snapshots and blobs were pruned, when a blob was last stored, and
each node's iteration count (read from its steps until now, which pruning removes).

``blobs.last_put_at`` moves on every put, also when the bytes were stored already: a blob stored again
by a live run is in use even when no row references it yet (it may travel in a workflow's input).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 19:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Every column that references a blob: retention asks whether anything still uses one.
_BLOB_REFERENCES = (
    ("runs", "query_ref"),
    ("runs", "context_ref"),
    ("nodes", "answer_ref"),
    ("steps", "input_ref"),
    ("steps", "output_ref"),
    ("snapshots", "blob_sha"),
)


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(sa.Column("last_put_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE blobs SET last_put_at = created_at")
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("iterations", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        "UPDATE nodes SET iterations = (SELECT COALESCE(MAX(steps.iteration), 0) FROM steps "
        "WHERE steps.node_id = nodes.node_id AND steps.kind = 'generate')"
    )
    op.create_index(op.f("ix_runs_finished_at"), "runs", ["finished_at"])
    for table, column in _BLOB_REFERENCES:
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column])


def downgrade() -> None:
    op.drop_index(op.f("ix_runs_finished_at"), table_name="runs")
    for table, column in _BLOB_REFERENCES:
        op.drop_index(op.f(f"ix_{table}_{column}"), table_name=table)
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("iterations")
    with op.batch_alter_table("blobs") as batch:
        batch.drop_column("last_put_at")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("pruned_at")
