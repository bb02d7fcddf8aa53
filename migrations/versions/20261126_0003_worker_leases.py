"""Worker leases: a worker's sandbox containers are removed by other workers once its lease expires.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 13:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker_leases",
        sa.Column("worker_id", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_worker_leases")),
    )
    op.create_index(op.f("ix_worker_leases_expires_at"), "worker_leases", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_worker_leases_expires_at"), table_name="worker_leases")
    op.drop_table("worker_leases")
