"""Runs by start time: ``rlm runs`` lists the newest runs first, with or without a tenant or status.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 19:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_runs_created_at"), "runs", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_runs_created_at"), table_name="runs")
