"""Retention: what ``rlm prune`` removes of finished runs, and what it must keep.

A pruned run loses its steps (model replies, cells, leaf calls), its REPL snapshots and its context;
it keeps its row, its nodes (status, answer, cost, tokens) and every ledger entry, so ``rlm status``,
``rlm tree`` and spend reports stay exact. A blob goes only when nothing references it any more *and*
nobody stored it lately (a session's documents, turns and notes are references too): a live run
may hold a blob only in a workflow's input (a child's prompt, an answer on its way back), so blobs
stored again after the oldest live run started stay.

Like the rest of the repository layer, every function takes the caller's ``Session`` and never
commits; the caller decides the batches (one transaction each), so pruning never holds locks long.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, ScalarSelect, and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from orchestrator.store.models import (
    Blob,
    Node,
    RlmSession,
    Run,
    SessionDocument,
    SessionNote,
    SessionTurn,
    Snapshot,
    Step,
    Tenant,
    utcnow,
)
from orchestrator.vocabulary import FINAL_STATUSES, SessionStatus

_FINAL = sorted(FINAL_STATUSES)


@dataclass(frozen=True)
class RunRows:
    """What pruning a batch of runs removes (or, in a dry run, would remove)."""

    steps: int
    snapshots: int
    blobs: list[str]  # blobs those rows referenced: candidates for collection


def prunable_runs(
    session: Session, *, finished_before: datetime, tenant: str | None, limit: int
) -> list[str]:
    """Runs ended before ``finished_before``, not pruned yet, with no node still at work (a restarted
    node of an ended run runs again under it), oldest first. The last turn of an open session stays,
    however old: the session's next turn restores its root's REPL snapshot."""
    live_node = exists().where(Node.run_id == Run.run_id, Node.status.not_in(_FINAL))
    later = aliased(SessionTurn)
    last_open_turn = exists().where(
        SessionTurn.run_id == Run.run_id,
        RlmSession.id == SessionTurn.session_id,
        RlmSession.status == SessionStatus.OPEN.value,
        ~exists().where(later.session_id == SessionTurn.session_id, later.turn > SessionTurn.turn),
    )
    stmt = select(Run.run_id).where(
        Run.status.in_(_FINAL),
        Run.finished_at < finished_before,
        Run.pruned_at.is_(None),
        ~live_node,
        ~last_open_turn,
    )
    if tenant is not None:
        stmt = stmt.join(Tenant, Tenant.id == Run.tenant_id).where(Tenant.name == tenant)
    return list(session.scalars(stmt.order_by(Run.finished_at, Run.run_id).limit(limit)))


def run_rows(session: Session, run_ids: Sequence[str]) -> RunRows:
    """The steps, snapshots and blob references that pruning ``run_ids`` removes."""
    nodes = _nodes_of(run_ids)
    steps = session.scalar(select(func.count()).select_from(Step).where(Step.node_id.in_(nodes))) or 0
    snapshots = (
        session.scalar(select(func.count()).select_from(Snapshot).where(Snapshot.node_id.in_(nodes))) or 0
    )
    refs: set[str] = set()
    for a, b in session.execute(select(Step.input_ref, Step.output_ref).where(Step.node_id.in_(nodes))):
        refs.update(r for r in (a, b) if r)
    refs.update(session.scalars(select(Snapshot.blob_sha).where(Snapshot.node_id.in_(nodes))))
    refs.update(
        r for r in session.scalars(select(Run.context_ref).where(Run.run_id.in_(run_ids))) if r is not None
    )
    return RunRows(steps=steps, snapshots=snapshots, blobs=sorted(refs))


def delete_run_rows(session: Session, run_ids: Sequence[str]) -> None:
    """Remove the runs' steps and snapshots, drop their contexts and mark them pruned."""
    nodes = _nodes_of(run_ids)
    session.execute(delete(Step).where(Step.node_id.in_(nodes)))
    session.execute(delete(Snapshot).where(Snapshot.node_id.in_(nodes)))
    session.execute(update(Run).where(Run.run_id.in_(run_ids)).values(context_ref=None, pruned_at=utcnow()))


def oldest_live_run(session: Session) -> datetime | None:
    """When the oldest run that is not over started (None: none is live)."""
    return session.scalar(select(func.min(Run.created_at)).where(Run.status.not_in(_FINAL)))


def collectable_blobs(
    session: Session, shas: Collection[str] | None, *, put_before: datetime, ignoring: Sequence[str] = ()
) -> tuple[int, int]:
    """How many of ``shas`` (None: of all blobs) nothing references and nobody stored since
    ``put_before``, and their stored bytes; rows of the runs in ``ignoring`` do not count as
    references (a dry run)."""
    if shas is not None and not shas:
        return 0, 0
    count, stored = session.execute(
        select(func.count(), func.coalesce(func.sum(Blob.stored_size), 0)).where(
            _collectable(shas, put_before, ignoring)
        )
    ).one()
    return int(count), int(stored)


def unused_blobs(session: Session, *, put_before: datetime, limit: int) -> list[str]:
    """Blobs nothing references that nobody stored since ``put_before``: left by any run (a REPL
    snapshot a running node dropped, a prompt whose step was never recorded)."""
    return list(session.scalars(select(Blob.sha256).where(_collectable(None, put_before, ())).limit(limit)))


def delete_blobs(session: Session, shas: Collection[str], *, put_before: datetime | None) -> tuple[int, int]:
    """Delete the collectable blobs of ``shas`` (their chunks go with them); returns count and bytes.

    ``put_before`` None: however recently stored (a REPL snapshot, which only its node's rows name;
    a concurrent writer that names it holds the blob's row until it commits, and the foreign key
    refuses the delete then)."""
    if not shas:
        return 0, 0
    gone = session.execute(
        delete(Blob).where(_collectable(shas, put_before, ())).returning(Blob.stored_size)
    ).all()
    return len(gone), sum(int(size) for (size,) in gone)


def _nodes_of(run_ids: Sequence[str]) -> ScalarSelect[str]:
    return select(Node.node_id).where(Node.run_id.in_(run_ids)).scalar_subquery()


def _collectable(
    shas: Collection[str] | None, put_before: datetime | None, ignoring: Sequence[str]
) -> ColumnElement[bool]:
    sha = Blob.sha256
    other_steps = Step.node_id.not_in(_nodes_of(ignoring)) if ignoring else None
    other_snapshots = Snapshot.node_id.not_in(_nodes_of(ignoring)) if ignoring else None
    other_runs = Run.run_id.not_in(ignoring) if ignoring else None
    referenced = or_(
        exists().where(or_(Run.query_ref == sha, _also(Run.context_ref == sha, other_runs))),
        exists().where(Node.answer_ref == sha),
        exists().where(_also(or_(Step.input_ref == sha, Step.output_ref == sha), other_steps)),
        exists().where(_also(Snapshot.blob_sha == sha, other_snapshots)),
        exists().where(SessionDocument.blob_sha == sha),
        exists().where(or_(SessionTurn.question_ref == sha, SessionTurn.answer_ref == sha)),
        exists().where(SessionNote.blob_sha == sha),
    )
    last_put = func.coalesce(Blob.last_put_at, Blob.created_at)
    unused = ~referenced if put_before is None else and_(last_put < put_before, ~referenced)
    return unused if shas is None else and_(sha.in_(list(shas)), unused)


def _also(condition: ColumnElement[bool], extra: ColumnElement[bool] | None) -> ColumnElement[bool]:
    return condition if extra is None else and_(condition, extra)
