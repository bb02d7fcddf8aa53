"""Tenants, runs and nodes (steps and snapshots: ``steps.py``). Every function takes the caller's
``Session`` first and never commits: the caller decides where the transaction ends. Writes that must
happen once (``create_run``, ``upsert_node``) are idempotent by their natural key, using
``INSERT ... ON CONFLICT DO NOTHING`` so that concurrent writers of the same key agree on one row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, bindparam, literal, select, update
from sqlalchemy.orm import Session

from orchestrator.store import validate
from orchestrator.store._sql import insert_ignore, rowcount, run
from orchestrator.store.errors import AlreadyExists, InvalidValue, NotFound, UnknownTenant
from orchestrator.store.models import (
    NODE_ID_MAX,
    RUN_ID_MAX,
    Node,
    Run,
    Tenant,
    utcnow,
)
from orchestrator.vocabulary import FINAL_STATUSES, Status

TENANT_NAME_MAX = 128

# A leaf's model call runs these: built once and executed with parameters (see _sql.py).
_NODES = cast(Table, Node.__table__)
_NODE_EXISTS = select(literal(1)).where(_NODES.c.node_id == bindparam("node_id"))
_NODE_IDENTITY = select(
    _NODES.c.run_id, _NODES.c.parent_id, _NODES.c.depth, _NODES.c.kind, _NODES.c.status
).where(_NODES.c.node_id == bindparam("node_id"))
# The columns to set come with the parameters.
_NODE_UPDATE = update(_NODES).where(_NODES.c.node_id == bindparam("b_node"))


@dataclass(frozen=True)
class BudgetUsage:
    """One budget's state. ``limit`` is None for a run without its own budget (only the tenant's applies)."""

    scope: str
    name: str
    limit: Decimal | None
    spent: Decimal
    reserved: Decimal

    @property
    def remaining(self) -> Decimal | None:
        # Negative when a settlement exceeded its reservation past the limit: the overshoot stays visible.
        return None if self.limit is None else self.limit - self.spent - self.reserved


# --- tenants ---------------------------------------------------------------------------------------


def create_tenant(session: Session, name: str, budget: Decimal) -> Tenant:
    validate.text_id(name, "tenant name", TENANT_NAME_MAX)
    budget_nanos = validate.nanos(budget, "tenant budget")
    now = utcnow()
    values = {"name": name, "budget_nanos": budget_nanos, "spent_nanos": 0, "reserved_nanos": 0}
    if not insert_ignore(session, Tenant, {**values, "created_at": now, "updated_at": now}, ["name"]):
        raise AlreadyExists("tenant", name, f"change its budget with `rlm tenant set-budget {name} AMOUNT`")
    return get_tenant(session, name)


def get_tenant(session: Session, name: str) -> Tenant:
    tenant = session.scalars(
        select(Tenant).where(Tenant.name == name).execution_options(populate_existing=True)
    ).one_or_none()
    if tenant is None:
        raise UnknownTenant(name)
    return tenant


def list_tenants(session: Session) -> list[Tenant]:
    return list(
        session.scalars(select(Tenant).order_by(Tenant.name).execution_options(populate_existing=True))
    )


def set_tenant_budget(session: Session, name: str, budget: Decimal) -> Tenant:
    """Set the tenant's limit; it applies to the very next reservation (lowering below spend is allowed)."""
    budget_nanos = validate.nanos(budget, "tenant budget")
    stmt = (
        update(Tenant)
        .where(Tenant.name == name)
        .values(budget_nanos=budget_nanos, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if rowcount(session.execute(stmt)) == 0:
        raise UnknownTenant(name)
    return get_tenant(session, name)


def tenant_usage(session: Session, name: str) -> BudgetUsage:
    tenant = get_tenant(session, name)
    return BudgetUsage("tenant", tenant.name, tenant.budget, tenant.spent, tenant.reserved)


# --- runs ------------------------------------------------------------------------------------------


def create_run(
    session: Session,
    run_id: str,
    *,
    tenant: str,
    query_ref: str | None = None,
    context_ref: str | None = None,
    config: Mapping[str, Any] | None = None,
    deadline: datetime | None = None,
    budget: Decimal | None = None,
    status: str = Status.PENDING,
) -> tuple[Run, bool]:
    """Create the run unless ``run_id`` exists; returns ``(run, created)``, an existing run as it is."""
    validate.text_id(run_id, "run id", RUN_ID_MAX)
    budget_nanos = None if budget is None else validate.nanos(budget, "run budget")
    if deadline is not None and deadline.tzinfo is None:
        raise InvalidValue("run deadline must be a timezone-aware datetime")
    tenant_row = get_tenant(session, tenant)
    now = utcnow()
    values = {
        "run_id": run_id,
        "tenant_id": tenant_row.id,
        "query_ref": query_ref,
        "context_ref": context_ref,
        "config": dict(config or {}),
        "status": validate.status(status),
        "deadline": deadline,
        "budget_nanos": budget_nanos,
        "spent_nanos": 0,
        "reserved_nanos": 0,
        "created_at": now,
        "updated_at": now,
    }
    created = insert_ignore(session, Run, values, ["run_id"])
    run = get_run(session, run_id)
    if not created and run.tenant_id != tenant_row.id:
        raise InvalidValue(f"run {run_id!r} already exists for another tenant; choose another run id")
    return run, created


def get_run(session: Session, run_id: str) -> Run:
    run = session.get(Run, run_id, populate_existing=True)
    if run is None:
        raise NotFound("run", run_id)
    return run


def list_runs(
    session: Session,
    *,
    tenant: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    limit: int = 20,
) -> list[tuple[Run, str]]:
    """The newest runs first, each with its tenant's name: of ``tenant`` (which must exist), in ``status``,
    started at or after ``since``; at most ``limit``."""
    if limit < 1:
        raise InvalidValue(f"the limit must be 1 or more, got {limit}")
    stmt = select(Run, Tenant.name).join(Tenant, Tenant.id == Run.tenant_id)
    if tenant is not None:
        stmt = stmt.where(Run.tenant_id == get_tenant(session, tenant).id)
    if status is not None:
        stmt = stmt.where(Run.status == validate.status(status))
    if since is not None:
        stmt = stmt.where(Run.created_at >= since)
    stmt = stmt.order_by(Run.created_at.desc(), Run.run_id.desc()).limit(limit)
    return [(found, name) for found, name in session.execute(stmt)]


def set_run_status(session: Session, run_id: str, status: str, *, error: str | None = None) -> Run:
    """Set the status; a final status (e.g. completed, failed) stamps ``finished_at``."""
    value = validate.status(status)
    now = utcnow()
    values: dict[str, Any] = {"status": value, "updated_at": now, "error": error}
    values["finished_at"] = now if value in FINAL_STATUSES else None
    stmt = (
        update(Run).where(Run.run_id == run_id).values(**values).execution_options(synchronize_session=False)
    )
    if rowcount(session.execute(stmt)) == 0:
        raise NotFound("run", run_id)
    return get_run(session, run_id)


def set_run_budget(session: Session, run_id: str, budget: Decimal | None) -> Run:
    """Set (or with None remove) the run's own limit; it applies to the very next reservation."""
    budget_nanos = None if budget is None else validate.nanos(budget, "run budget")
    stmt = (
        update(Run)
        .where(Run.run_id == run_id)
        .values(budget_nanos=budget_nanos, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if rowcount(session.execute(stmt)) == 0:
        raise NotFound("run", run_id)
    return get_run(session, run_id)


def run_usage(session: Session, run_id: str) -> BudgetUsage:
    run = get_run(session, run_id)
    return BudgetUsage("run", run.run_id, run.budget, run.spent, run.reserved)


# --- nodes -----------------------------------------------------------------------------------------


def upsert_node(
    session: Session,
    node_id: str,
    *,
    run_id: str,
    kind: str,
    depth: int,
    parent_id: str | None = None,
    status: str | None = None,
    workflow_id: str | None = None,
) -> bool:
    """Insert the node once; later calls (retries, resets) only update ``status`` when one is given.
    Returns whether this call inserted it.

    The identity fields (run, parent, depth, kind) cannot change: a mismatch raises ``InvalidValue``.
    """
    validate.text_id(node_id, "node id", NODE_ID_MAX)
    now = utcnow()
    values = {
        "node_id": node_id,
        "run_id": run_id,
        "parent_id": parent_id,
        "depth": validate.count(depth, "depth"),
        "kind": validate.kind(kind),
        "status": validate.status(status or Status.PENDING),
        "workflow_id": validate.text_id(workflow_id or node_id, "workflow id", NODE_ID_MAX),
        "cost_nanos": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "created_at": now,
        "updated_at": now,
    }
    if insert_ignore(session, Node, values, ["node_id"]):
        return True
    node = run(session, _NODE_IDENTITY, {"node_id": node_id}).one()
    identity = (node.run_id, node.parent_id, node.depth, node.kind)
    if identity != (run_id, parent_id, depth, values["kind"]):
        raise InvalidValue(
            f"node {node_id!r} exists as (run, parent, depth, kind) = {identity}, "
            f"not {(run_id, parent_id, depth, values['kind'])}"
        )
    if status is not None and node.status != values["status"]:
        set_node_status(session, node_id, status)
    return False


def get_node(session: Session, node_id: str) -> Node:
    node = session.get(Node, node_id, populate_existing=True)
    if node is None:
        raise NotFound("node", node_id)
    return node


def set_node_status(session: Session, node_id: str, status: str, *, error: str | None = None) -> Node:
    value = validate.status(status)
    values: dict[str, Any] = {"status": value, "updated_at": utcnow(), "error": error}
    if value not in FINAL_STATUSES:
        values["finished_at"] = None
    stmt = (
        update(Node)
        .where(Node.node_id == node_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if rowcount(session.execute(stmt)) == 0:
        raise NotFound("node", node_id)
    return get_node(session, node_id)


def finish_node(
    session: Session,
    node_id: str,
    *,
    status: str = Status.COMPLETED,
    answer_ref: str | None = None,
    error: str | None = None,
) -> None:
    value = validate.status(status)
    if value not in FINAL_STATUSES:
        raise InvalidValue(
            f"finish_node needs a final status ({', '.join(sorted(FINAL_STATUSES))}), got {value!r}"
        )
    now = utcnow()
    values = {
        "status": value,
        "answer_ref": answer_ref,
        "error": error,
        "finished_at": now,
        "updated_at": now,
    }
    if rowcount(run(session, _NODE_UPDATE, {"b_node": node_id, **values})) == 0:
        raise NotFound("node", node_id)


def note_attempt(session: Session, node_id: str, attempt: int, error: str | None) -> None:
    """A node's model call failed and will be retried: keep which attempt that was and why
    (``attempt`` 0 and no error: the call went through after all)."""
    values = {"b_node": node_id, "attempts": validate.count(attempt, "attempt"), "error": error}
    run(session, _NODE_UPDATE, values)


def retrying_nodes(
    session: Session, min_attempts: int, *, run_id: str | None = None, tenant: str | None = None
) -> list[Node]:
    """Running nodes whose model call has failed at least ``min_attempts`` times in a row."""
    stmt = select(Node).where(Node.status == Status.RUNNING.value, Node.attempts >= min_attempts)
    if run_id is not None:
        stmt = stmt.where(Node.run_id == run_id)
    if tenant is not None:
        stmt = stmt.join(Run, Run.run_id == Node.run_id).join(Tenant).where(Tenant.name == tenant)
    return list(session.scalars(stmt.order_by(Node.node_id).execution_options(populate_existing=True)))


def list_nodes(session: Session, run_id: str) -> list[Node]:
    stmt = select(Node).where(Node.run_id == run_id).order_by(Node.depth, Node.node_id)
    return list(session.scalars(stmt.execution_options(populate_existing=True)))
