"""SQLAlchemy 2 typed models of the store. The Alembic migrations in ``migrations/`` create exactly these.

Money columns hold whole nano-dollars (see ``money.py``); per-token prices are decimal text so that
both backends keep them exact. Every constraint is named through the metadata naming convention so
that migrations can address them on PostgreSQL and SQLite alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import DateTime, TypeDecorator

from orchestrator.store.money import from_nanos
from orchestrator.vocabulary import SessionStatus, Status

ABORT_INDEX = "ix_nodes_abort_requested"
ABORT_WHERE = "abort_requested_at IS NOT NULL"

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SHA256_LEN = 64
RUN_ID_MAX = 128
NODE_ID_MAX = 255
WORKER_ID_MAX = 255


class LedgerKind(StrEnum):
    RESERVE = "reserve"
    SETTLE = "settle"
    RELEASE = "release"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite drops the zone; it is put back on load)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass a timezone-aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class DecimalText(TypeDecorator[Decimal]):
    """An exact decimal stored as text (SQLite's NUMERIC would round through a float)."""

    impl = String(64)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        return None if value is None else format(value, "f")

    def process_result_value(self, value: str | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


# SQLite only auto-increments an INTEGER PRIMARY KEY (its rowid), not a BIGINT one.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class BudgetScope:
    """What a tenant and a run both track: spent and reserved money, in nanodollars."""

    spent_nanos: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_nanos: Mapped[int] = mapped_column(BigInteger, default=0)

    @property
    def spent(self) -> Decimal:
        return from_nanos(self.spent_nanos)

    @property
    def reserved(self) -> Decimal:
        return from_nanos(self.reserved_nanos)


class Tenant(BudgetScope, Base):
    __tablename__ = "tenants"
    __table_args__ = (
        CheckConstraint("budget_nanos >= 0", name="budget_nonnegative"),
        CheckConstraint("spent_nanos >= 0", name="spent_nonnegative"),
        CheckConstraint("reserved_nanos >= 0", name="reserved_nonnegative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    budget_nanos: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def budget(self) -> Decimal:
        return from_nanos(self.budget_nanos)


class Blob(Base):
    __tablename__ = "blobs"
    __table_args__ = (CheckConstraint("size >= 0", name="size_nonnegative"),)

    sha256: Mapped[str] = mapped_column(String(SHA256_LEN), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    stored_size: Mapped[int] = mapped_column(BigInteger)
    chunk_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Every put moves it, also of bytes stored already: retention keeps what live runs stored lately.
    last_put_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow)


class BlobChunk(Base):
    __tablename__ = "blob_chunks"

    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    compressed: Mapped[bool] = mapped_column(Boolean)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Run(BudgetScope, Base):
    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint("budget_nanos IS NULL OR budget_nanos >= 0", name="budget_nonnegative"),
        CheckConstraint("spent_nanos >= 0", name="spent_nonnegative"),
        CheckConstraint("reserved_nanos >= 0", name="reserved_nonnegative"),
    )

    run_id: Mapped[str] = mapped_column(String(RUN_ID_MAX), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    # Indexed, like every reference to a blob: retention asks "does anything still use this blob?".
    query_ref: Mapped[str | None] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    context_ref: Mapped[str | None] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(32), default=Status.PENDING.value)
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    budget_nanos: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    # Indexed: `rlm runs` lists the newest first.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # Set by `rlm prune`: the run's steps, snapshots and context are gone; its summary and ledger stay.
    pruned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A session's turn: the session is a third budget scope of the run's model calls.
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"), index=True)

    @property
    def budget(self) -> Decimal | None:
        return None if self.budget_nanos is None else from_nanos(self.budget_nanos)


class RlmSession(BudgetScope, Base):
    """A named, multi-turn conversation of one tenant; its memory is its documents, turns and notes."""

    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        CheckConstraint("budget_nanos IS NULL OR budget_nanos >= 0", name="budget_nonnegative"),
        CheckConstraint("spent_nanos >= 0", name="spent_nonnegative"),
        CheckConstraint("reserved_nanos >= 0", name="reserved_nonnegative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(RUN_ID_MAX))
    status: Mapped[str] = mapped_column(String(16), default=SessionStatus.OPEN.value)
    model: Mapped[str] = mapped_column(String(255))
    sub_model: Mapped[str] = mapped_column(String(255))
    budget_nanos: Mapped[int | None] = mapped_column(BigInteger)
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    turns: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def budget(self) -> Decimal | None:
        return None if self.budget_nanos is None else from_nanos(self.budget_nanos)


class SessionDocument(Base):
    __tablename__ = "session_documents"

    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(1024))
    blob_sha: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    chars: Mapped[int] = mapped_column(BigInteger)
    # The blob holds the JSON of a value (a .json file, a JSON-lines record) rather than plain text.
    is_json: Mapped[bool] = mapped_column(Boolean, default=False)


class SessionTurn(Base):
    __tablename__ = "session_turns"

    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    turn: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"), unique=True)
    question_ref: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    answer_ref: Mapped[str | None] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    status: Mapped[str] = mapped_column(String(32), default=Status.PENDING.value)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SessionNote(Base):
    """What a turn's ``remember(text)`` kept; the key (node, cell, call) makes a retried cell's note one."""

    __tablename__ = "session_notes"
    __table_args__ = (Index(None, "session_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"))
    turn: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    text: Mapped[str | None] = mapped_column(Text)  # short notes inline, longer ones in ``blob_sha``
    blob_sha: Mapped[str | None] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(512), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Node(Base):
    __tablename__ = "nodes"
    __table_args__ = (
        CheckConstraint("depth >= 0", name="depth_nonnegative"),
        CheckConstraint("kind IN ('root', 'rlm', 'leaf')", name="kind_known"),
        CheckConstraint("cost_nanos >= 0", name="cost_nonnegative"),
        # Workers look for abort requests every second while they call a model: a few rows, found directly.
        Index(
            ABORT_INDEX,
            "run_id",
            sqlite_where=text(ABORT_WHERE),
            postgresql_where=text(ABORT_WHERE),
        ),
    )

    node_id: Mapped[str] = mapped_column(String(NODE_ID_MAX), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"), index=True)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("nodes.node_id"), index=True)
    depth: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(32), default=Status.PENDING.value)
    workflow_id: Mapped[str] = mapped_column(String(NODE_ID_MAX))
    answer_ref: Mapped[str | None] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    cost_nanos: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    # The last iteration with a recorded model reply: kept on the node so that summaries survive pruning.
    iterations: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The attempt of the model call that last failed and is being retried (its error in ``error``):
    # leaf calls are local activities, which Temporal's pending-activity view does not show.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Set by `rlm abort` on its target's top node: model calls of that subtree in flight stop within a
    # second (``activities.abort_watch``) instead of when Temporal's cancel reaches them.
    abort_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def cost(self) -> Decimal:
        return from_nanos(self.cost_nanos)


class Step(Base):
    __tablename__ = "steps"
    __table_args__ = (
        UniqueConstraint("node_id", "iteration", "kind", "step_index"),
        CheckConstraint("cost_nanos >= 0", name="cost_nonnegative"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.node_id"))
    iteration: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    index: Mapped[int] = mapped_column("step_index", Integer)
    input_ref: Mapped[str | None] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    output_ref: Mapped[str | None] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    summary: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(255))
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_nanos: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def cost(self) -> Decimal:
        return from_nanos(self.cost_nanos)


class Snapshot(Base):
    __tablename__ = "snapshots"
    __table_args__ = (UniqueConstraint("node_id", "cell"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.node_id"))
    cell: Mapped[int] = mapped_column(Integer)
    blob_sha: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class LedgerEntry(Base):
    """Append-only. A reservation is one ``reserve`` row (phase 0) and at most one closing row (phase 1)."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("reservation_id", "phase"),
        CheckConstraint(
            "(phase = 0 AND kind = 'reserve') OR (phase = 1 AND kind IN ('settle', 'release'))",
            name="phase_matches_kind",
        ),
        CheckConstraint("amount_nanos >= 0", name="amount_nonnegative"),
        CheckConstraint("released_nanos >= 0", name="released_nonnegative"),
        Index(None, "run_id"),
        Index(None, "tenant_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    reservation_id: Mapped[str] = mapped_column(String(32))
    phase: Mapped[int] = mapped_column(SmallInteger)
    kind: Mapped[str] = mapped_column(String(8))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    # reserve: the amount held; settle: the actual cost; release: 0.
    amount_nanos: Mapped[int] = mapped_column(BigInteger)
    # closing rows: the reservation they free (so sums need no self-join).
    released_nanos: Mapped[int] = mapped_column(BigInteger, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelPriceRow(Base):
    __tablename__ = "model_prices"

    model: Mapped[str] = mapped_column(String(255), primary_key=True)
    input_per_token: Mapped[Decimal] = mapped_column(DecimalText)
    output_per_token: Mapped[Decimal] = mapped_column(DecimalText)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WorkerLease(Base):
    """A live worker's claim on its sandbox containers: renewed while it runs, deleted when it stops.

    A worker whose lease has expired is dead; any live worker of the same store removes its containers.
    """

    __tablename__ = "worker_leases"

    worker_id: Mapped[str] = mapped_column(String(WORKER_ID_MAX), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    renewed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Each worker sets its own (renewed_at + its lease length), so workers of different settings agree.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
