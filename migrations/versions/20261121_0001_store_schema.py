"""Store schema: tenants, runs, nodes, steps, blobs, snapshots, ledger entries, model prices.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 10:48:17.739830
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("stored_size", sa.BigInteger(), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("size >= 0", name=op.f("ck_blobs_size_nonnegative")),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_blobs")),
    )
    op.create_table(
        "model_prices",
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("input_per_token", sa.String(length=64), nullable=False),
        sa.Column("output_per_token", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model", name=op.f("pk_model_prices")),
    )
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("budget_nanos", sa.BigInteger(), nullable=False),
        sa.Column("spent_nanos", sa.BigInteger(), nullable=False),
        sa.Column("reserved_nanos", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("budget_nanos >= 0", name=op.f("ck_tenants_budget_nonnegative")),
        sa.CheckConstraint("reserved_nanos >= 0", name=op.f("ck_tenants_reserved_nonnegative")),
        sa.CheckConstraint("spent_nanos >= 0", name=op.f("ck_tenants_spent_nonnegative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("name", name=op.f("uq_tenants_name")),
    )
    op.create_table(
        "blob_chunks",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("compressed", sa.Boolean(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sha256"], ["blobs.sha256"], name=op.f("fk_blob_chunks_sha256_blobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("sha256", "seq", name=op.f("pk_blob_chunks")),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("query_ref", sa.String(length=64), nullable=True),
        sa.Column("context_ref", sa.String(length=64), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("budget_nanos", sa.BigInteger(), nullable=True),
        sa.Column("spent_nanos", sa.BigInteger(), nullable=False),
        sa.Column("reserved_nanos", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "budget_nanos IS NULL OR budget_nanos >= 0", name=op.f("ck_runs_budget_nonnegative")
        ),
        sa.CheckConstraint("reserved_nanos >= 0", name=op.f("ck_runs_reserved_nonnegative")),
        sa.CheckConstraint("spent_nanos >= 0", name=op.f("ck_runs_spent_nonnegative")),
        sa.ForeignKeyConstraint(["context_ref"], ["blobs.sha256"], name=op.f("fk_runs_context_ref_blobs")),
        sa.ForeignKeyConstraint(["query_ref"], ["blobs.sha256"], name=op.f("fk_runs_query_ref_blobs")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_runs_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_runs")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reservation_id", sa.String(length=32), nullable=False),
        sa.Column("phase", sa.SmallInteger(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("amount_nanos", sa.BigInteger(), nullable=False),
        sa.Column("released_nanos", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(phase = 0 AND kind = 'reserve') OR (phase = 1 AND kind IN ('settle', 'release'))",
            name=op.f("ck_ledger_entries_phase_matches_kind"),
        ),
        sa.CheckConstraint("amount_nanos >= 0", name=op.f("ck_ledger_entries_amount_nonnegative")),
        sa.CheckConstraint("released_nanos >= 0", name=op.f("ck_ledger_entries_released_nonnegative")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name=op.f("fk_ledger_entries_run_id_runs")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_ledger_entries_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_ledger_entries_idempotency_key")),
        sa.UniqueConstraint("reservation_id", "phase", name=op.f("uq_ledger_entries_reservation_id_phase")),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_entries_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_entries_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "nodes",
        sa.Column("node_id", sa.String(length=255), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("parent_id", sa.String(length=255), nullable=True),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("answer_ref", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cost_nanos", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('root', 'rlm', 'leaf')", name=op.f("ck_nodes_kind_known")),
        sa.CheckConstraint("cost_nanos >= 0", name=op.f("ck_nodes_cost_nonnegative")),
        sa.CheckConstraint("depth >= 0", name=op.f("ck_nodes_depth_nonnegative")),
        sa.ForeignKeyConstraint(["answer_ref"], ["blobs.sha256"], name=op.f("fk_nodes_answer_ref_blobs")),
        sa.ForeignKeyConstraint(["parent_id"], ["nodes.node_id"], name=op.f("fk_nodes_parent_id_nodes")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name=op.f("fk_nodes_run_id_runs")),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_nodes")),
    )
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_nodes_parent_id"), ["parent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_nodes_run_id"), ["run_id"], unique=False)

    op.create_table(
        "snapshots",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("node_id", sa.String(length=255), nullable=False),
        sa.Column("cell", sa.Integer(), nullable=False),
        sa.Column("blob_sha", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["blob_sha"], ["blobs.sha256"], name=op.f("fk_snapshots_blob_sha_blobs")),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.node_id"], name=op.f("fk_snapshots_node_id_nodes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshots")),
        sa.UniqueConstraint("node_id", "cell", name=op.f("uq_snapshots_node_id_cell")),
    )
    op.create_table(
        "steps",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("node_id", sa.String(length=255), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("input_ref", sa.String(length=64), nullable=True),
        sa.Column("output_ref", sa.String(length=64), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("model", sa.String(length=255), nullable=True),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_nanos", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("cost_nanos >= 0", name=op.f("ck_steps_cost_nonnegative")),
        sa.ForeignKeyConstraint(["input_ref"], ["blobs.sha256"], name=op.f("fk_steps_input_ref_blobs")),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.node_id"], name=op.f("fk_steps_node_id_nodes")),
        sa.ForeignKeyConstraint(["output_ref"], ["blobs.sha256"], name=op.f("fk_steps_output_ref_blobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_steps")),
        sa.UniqueConstraint(
            "node_id",
            "iteration",
            "kind",
            "step_index",
            name=op.f("uq_steps_node_id_iteration_kind_step_index"),
        ),
    )
    _ledger_append_only()


# The ledger is append-only: the database itself refuses to change or remove an entry.
def _ledger_append_only() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'ledger entries are append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries "
            "FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()"
        )
        return
    for event in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER ledger_entries_no_{event.lower()} BEFORE {event} ON ledger_entries "
            "BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END"
        )


def downgrade() -> None:
    op.drop_table("steps")
    op.drop_table("snapshots")
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nodes_run_id"))
        batch_op.drop_index(batch_op.f("ix_nodes_parent_id"))

    op.drop_table("nodes")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_entries_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_ledger_entries_run_id"))

    op.drop_table("ledger_entries")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ledger_entries_append_only()")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_tenant_id"))

    op.drop_table("runs")
    op.drop_table("blob_chunks")
    op.drop_table("tenants")
    op.drop_table("model_prices")
    op.drop_table("blobs")
