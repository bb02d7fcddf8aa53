"""Sessions: named multi-turn conversations of a tenant, their documents, turns and notes; runs that
are a session's turn name it (the session is a budget scope of their model calls).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("sub_model", sa.String(length=255), nullable=False),
        sa.Column("budget_nanos", sa.BigInteger(), nullable=True),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("turns", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("closed_at", _TS, nullable=True),
        sa.Column("spent_nanos", sa.BigInteger(), nullable=False),
        sa.Column("reserved_nanos", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "budget_nanos IS NULL OR budget_nanos >= 0", name=op.f("ck_sessions_budget_nonnegative")
        ),
        sa.CheckConstraint("spent_nanos >= 0", name=op.f("ck_sessions_spent_nonnegative")),
        sa.CheckConstraint("reserved_nanos >= 0", name=op.f("ck_sessions_reserved_nonnegative")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_sessions_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_sessions_tenant_id_name")),
    )
    op.create_index(op.f("ix_sessions_tenant_id"), "sessions", ["tenant_id"])
    op.create_table(
        "session_documents",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("blob_sha", sa.String(length=64), nullable=False),
        sa.Column("chars", sa.BigInteger(), nullable=False),
        sa.Column("is_json", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=op.f("fk_session_documents_session_id_sessions")
        ),
        sa.ForeignKeyConstraint(
            ["blob_sha"], ["blobs.sha256"], name=op.f("fk_session_documents_blob_sha_blobs")
        ),
        sa.PrimaryKeyConstraint("session_id", "seq", name=op.f("pk_session_documents")),
    )
    op.create_index(op.f("ix_session_documents_blob_sha"), "session_documents", ["blob_sha"])
    op.create_table(
        "session_turns",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("question_ref", sa.String(length=64), nullable=False),
        sa.Column("answer_ref", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=op.f("fk_session_turns_session_id_sessions")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name=op.f("fk_session_turns_run_id_runs")),
        sa.ForeignKeyConstraint(
            ["question_ref"], ["blobs.sha256"], name=op.f("fk_session_turns_question_ref_blobs")
        ),
        sa.ForeignKeyConstraint(
            ["answer_ref"], ["blobs.sha256"], name=op.f("fk_session_turns_answer_ref_blobs")
        ),
        sa.PrimaryKeyConstraint("session_id", "turn", name=op.f("pk_session_turns")),
        sa.UniqueConstraint("run_id", name=op.f("uq_session_turns_run_id")),
    )
    op.create_index(op.f("ix_session_turns_question_ref"), "session_turns", ["question_ref"])
    op.create_index(op.f("ix_session_turns_answer_ref"), "session_turns", ["answer_ref"])
    op.create_table(
        "session_notes",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("blob_sha", sa.String(length=64), nullable=True),
        sa.Column("idempotency_key", sa.String(length=512), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=op.f("fk_session_notes_session_id_sessions")
        ),
        sa.ForeignKeyConstraint(["blob_sha"], ["blobs.sha256"], name=op.f("fk_session_notes_blob_sha_blobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_notes")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_session_notes_idempotency_key")),
    )
    op.create_index(op.f("ix_session_notes_blob_sha"), "session_notes", ["blob_sha"])
    op.create_index(op.f("ix_session_notes_session_id_id"), "session_notes", ["session_id", "id"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("session_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_runs_session_id_sessions"), "sessions", ["session_id"], ["id"])
        batch.create_index(op.f("ix_runs_session_id"), ["session_id"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index(op.f("ix_runs_session_id"))
        batch.drop_constraint(op.f("fk_runs_session_id_sessions"), type_="foreignkey")
        batch.drop_column("session_id")
    op.drop_table("session_notes")
    op.drop_table("session_turns")
    op.drop_table("session_documents")
    op.drop_table("sessions")
