"""Read queries for the live progress of ``rlm run`` / ``rlm wait`` / ``rlm watch``: a run's money and its
tenant's, its nodes counted by status, and the nodes an operator wants to see now (the root, paused ones)
with their latest step.

Repository-layer style: every function takes the caller's ``Session`` first and never commits. A refresh
asks three aggregate statements whatever the size of the tree, never one per node.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, aliased

from orchestrator.store.models import Node, Run, Step, Tenant
from orchestrator.vocabulary import FINAL_STATUSES, PAUSED_STATUSES

# Paused nodes shown beside the root: an operator needs to see that some are, not every one of a fan-out.
FOCUS_LIMIT = 4


@dataclass(frozen=True)
class RunFigures:
    """A run's status, times and money (nanodollars) beside its tenant's."""

    status: str
    created_at: datetime
    finished_at: datetime | None
    spent_nanos: int
    reserved_nanos: int
    budget_nanos: int | None
    tenant: str
    tenant_spent_nanos: int
    tenant_reserved_nanos: int
    tenant_budget_nanos: int


@dataclass(frozen=True)
class FocusNode:
    """A node worth naming in the view, with its latest recorded step (None before its first)."""

    node_id: str
    kind: str
    status: str
    error: str | None
    is_root: bool
    open_children: int  # children not yet in a final status: the sub-calls it waits on
    step_iteration: int | None
    step_kind: str | None
    step_index: int | None
    step_output_ref: str | None


def run_figures(session: Session, run_id: str) -> RunFigures | None:
    """None when no run has that id."""
    stmt = (
        select(
            Run.status,
            Run.created_at,
            Run.finished_at,
            Run.spent_nanos,
            Run.reserved_nanos,
            Run.budget_nanos,
            Tenant.name,
            Tenant.spent_nanos,
            Tenant.reserved_nanos,
            Tenant.budget_nanos,
        )
        .join(Tenant, Tenant.id == Run.tenant_id)
        .where(Run.run_id == run_id)
    )
    row = session.execute(stmt).one_or_none()
    if row is None:
        return None
    return RunFigures(
        status=row[0],
        created_at=row[1],
        finished_at=row[2],
        spent_nanos=row[3],
        reserved_nanos=row[4],
        budget_nanos=row[5],
        tenant=row[6],
        tenant_spent_nanos=row[7],
        tenant_reserved_nanos=row[8],
        tenant_budget_nanos=row[9],
    )


def node_counts(session: Session, run_id: str) -> dict[tuple[str, bool], int]:
    """How many of the run's nodes are in each status, keyed by (status, is a sub-call)."""
    is_subcall = Node.parent_id.is_not(None)
    stmt = (
        select(Node.status, is_subcall, func.count())
        .where(Node.run_id == run_id)
        .group_by(Node.status, is_subcall)
    )
    return {(status, bool(sub)): count for status, sub, count in session.execute(stmt)}


def focus_nodes(session: Session, run_id: str, limit: int = FOCUS_LIMIT) -> list[FocusNode]:
    """The root and up to ``limit`` paused nodes, root first, each with its latest step and the number of
    its children still open."""
    child = aliased(Node)
    open_children = (
        select(func.count())
        .where(child.parent_id == Node.node_id, child.status.not_in([s.value for s in FINAL_STATUSES]))
        .scalar_subquery()
    )
    # Step ids only grow, so the largest is the node's latest write.
    latest = select(func.max(Step.id)).where(Step.node_id == Node.node_id).scalar_subquery()
    focus = (
        select(
            Node.node_id,
            Node.kind,
            Node.status,
            Node.error,
            Node.parent_id.is_(None).label("is_root"),
            open_children.label("open_children"),
            latest.label("latest_step"),
        )
        .where(
            Node.run_id == run_id,
            or_(Node.parent_id.is_(None), Node.status.in_([s.value for s in PAUSED_STATUSES])),
        )
        .order_by(Node.depth, Node.node_id)
        .limit(limit + 1)
        .subquery()
    )
    stmt = select(
        focus,
        Step.iteration.label("step_iteration"),
        Step.kind.label("step_kind"),
        Step.index.label("step_index"),
        Step.output_ref.label("step_output_ref"),
    ).outerjoin(Step, Step.id == focus.c.latest_step)
    rows = [
        FocusNode(
            node_id=r.node_id,
            kind=r.kind,
            status=r.status,
            error=r.error,
            is_root=bool(r.is_root),
            open_children=r.open_children,
            step_iteration=r.step_iteration,
            step_kind=r.step_kind,
            step_index=r.step_index,
            step_output_ref=r.step_output_ref,
        )
        for r in session.execute(stmt)
    ]
    return sorted(rows, key=lambda n: not n.is_root)
