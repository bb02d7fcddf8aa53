"""Read queries for transcripts (``rlm show``, ``rlm export``, ``rlm report``): a node with its run and
tenant, its children, and the steps that say what each child was asked and answered.

Repository-layer style: every function takes the caller's ``Session`` first and never commits. Each
asks in one statement what a 1,000-way fan-out would otherwise ask 1,000 times.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from orchestrator.store.models import Node, Run, Step, Tenant
from orchestrator.vocabulary import StepKind


@dataclass(frozen=True)
class NodeRow:
    node: Node
    run: Run
    tenant: str


def node_row(session: Session, node_id: str) -> NodeRow | None:
    """The node with its run and the run's tenant name, or None when no node has that id."""
    stmt = (
        select(Node, Run, Tenant.name)
        .join(Run, Run.run_id == Node.run_id)
        .join(Tenant, Tenant.id == Run.tenant_id)
        .where(Node.node_id == node_id)
    )
    row = session.execute(stmt).one_or_none()
    return None if row is None else NodeRow(node=row[0], run=row[1], tenant=row[2])


def run_exists(session: Session, run_id: str) -> bool:
    return session.scalars(select(Run.run_id).where(Run.run_id == run_id)).first() is not None


def child_nodes(session: Session, node_id: str) -> list[Node]:
    return list(session.scalars(select(Node).where(Node.parent_id == node_id)))


def children_first_steps(session: Session, node_id: str) -> dict[str, Step]:
    """Per child of ``node_id``, the step that holds what it was asked: a leaf's call (its prompt is the
    step's input), or an RLM child's first model reply (its input is the child's prompt, when recorded)."""
    stmt = (
        select(Step)
        .join(Node, Node.node_id == Step.node_id)
        .where(
            Node.parent_id == node_id,
            or_(
                Step.kind == StepKind.LEAF.value,
                and_(Step.kind == StepKind.GENERATE.value, Step.iteration == 1),
            ),
        )
    )
    return {step.node_id: step for step in session.scalars(stmt)}
