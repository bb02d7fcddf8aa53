"""Steps (a node's recorded model replies, cells and leaf calls) and REPL snapshots. Like the rest of
the repository layer, every function takes the caller's ``Session`` first and never commits. A step is
written once per (node, iteration, kind, index): a retried write changes nothing and counts its cost once.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypedDict, Unpack, cast

from sqlalchemy import Table, bindparam, case, delete, literal, select, update
from sqlalchemy.orm import Session

from orchestrator.store import validate
from orchestrator.store._sql import insert_ignore, run, upsert
from orchestrator.store.errors import InvalidValue, NotFound
from orchestrator.store.models import Node, Snapshot, Step, utcnow
from orchestrator.store.retention import delete_blobs
from orchestrator.vocabulary import StepKind

_NODES = cast(Table, Node.__table__)
_NODE_EXISTS = select(literal(1)).where(_NODES.c.node_id == bindparam("node_id"))
_NODE_ADD_STEP = (
    update(_NODES)
    .where(_NODES.c.node_id == bindparam("b_node"))
    .values(
        cost_nanos=_NODES.c.cost_nanos + bindparam("b_cost"),
        prompt_tokens=_NODES.c.prompt_tokens + bindparam("b_prompt"),
        completion_tokens=_NODES.c.completion_tokens + bindparam("b_completion"),
        iterations=case(
            (_NODES.c.iterations < bindparam("b_iteration"), bindparam("b_iteration")),
            else_=_NODES.c.iterations,
        ),
        updated_at=bindparam("b_now"),
    )
)
_FIND_STEP = (
    select(Step)
    .where(
        Step.node_id == bindparam("node_id"),
        Step.iteration == bindparam("iteration"),
        Step.kind == bindparam("kind"),
        Step.index == bindparam("index"),
    )
    .execution_options(populate_existing=True)
)


# --- steps -----------------------------------------------------------------------------------------


class StepFields(TypedDict, total=False):
    """What a step may carry besides its key; every field defaults to empty (zero tokens, no cost)."""

    input_ref: str | None
    output_ref: str | None
    summary: str | None
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    duration_ms: int | None
    data: Mapping[str, Any] | None


def record_step(
    session: Session, node_id: str, iteration: int, kind: str, index: int, **fields: Unpack[StepFields]
) -> Step:
    """Write a step once per (node, iteration, kind, index) and return the first write.

    The first write also adds its cost and tokens to the node's totals, so retried writes count once.
    """
    write_step(session, node_id, iteration, kind, index, **fields)
    step = find_step(session, node_id, iteration, kind, index)
    if step is None:
        raise NotFound("step", f"{node_id} {iteration} {kind} {index}")
    return step


def write_step(
    session: Session,
    node_id: str,
    iteration: int,
    kind: str,
    index: int,
    *,
    input_ref: str | None = None,
    output_ref: str | None = None,
    summary: str | None = None,
    model: str | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cost: Decimal = Decimal(0),
    duration_ms: int | None = None,
    data: Mapping[str, Any] | None = None,
) -> bool:
    """``record_step`` for callers that do not read the step back: returns whether this was the first
    write (a later one changes nothing)."""
    key = (node_id, validate.count(iteration, "iteration"), validate.text_id(kind, "step kind", 32))
    key_index = validate.count(index, "step index")
    cost_nanos = validate.nanos(cost, "step cost")
    if run(session, _NODE_EXISTS, {"node_id": node_id}).first() is None:
        raise NotFound("node", node_id)
    values = {
        "node_id": node_id,
        "iteration": key[1],
        "kind": kind,
        "index": key_index,
        "input_ref": input_ref,
        "output_ref": output_ref,
        "summary": summary,
        "model": model,
        "prompt_tokens": validate.count(prompt_tokens, "prompt tokens"),
        "completion_tokens": validate.count(completion_tokens, "completion tokens"),
        "cost_nanos": cost_nanos,
        "duration_ms": None if duration_ms is None else validate.count(duration_ms, "duration_ms"),
        "data": None if data is None else dict(data),
        "created_at": utcnow(),
    }
    if insert_ignore(session, Step, values, ["node_id", "iteration", "kind", "step_index"]):
        totals = {
            "b_node": node_id,
            "b_cost": cost_nanos,
            "b_prompt": prompt_tokens,
            "b_completion": completion_tokens,
            # Only model replies count as iterations (a leaf's one call is not one).
            "b_iteration": key[1] if kind == StepKind.GENERATE else 0,
            "b_now": utcnow(),
        }
        run(session, _NODE_ADD_STEP, totals)
        return True
    return False


def find_step(session: Session, node_id: str, iteration: int, kind: str, index: int) -> Step | None:
    params = {"node_id": node_id, "iteration": iteration, "kind": kind, "index": index}
    return session.scalars(_FIND_STEP, params).one_or_none()


def list_steps(session: Session, node_id: str) -> list[Step]:
    stmt = select(Step).where(Step.node_id == node_id).order_by(Step.iteration, Step.id)
    return list(session.scalars(stmt))


# --- REPL snapshots --------------------------------------------------------------------------------

KEEP_SNAPSHOTS = 3


def save_snapshot(
    session: Session, node_id: str, cell: int, blob_sha: str, *, keep: int = KEEP_SNAPSHOTS
) -> Snapshot:
    """Record the REPL state after ``cell``. A retried cell replaces it: the live sandbox holds that state.

    Only the node's last ``keep`` snapshots stay (a restart needs the latest one alone; 0 keeps every
    one); a dropped one's blob goes with it unless another row names the same bytes."""
    cell = validate.count(cell, "cell")
    if keep < 0:
        raise InvalidValue(f"snapshots to keep must be 0 (all) or more, got {keep}")
    now = utcnow()
    values = {"node_id": node_id, "cell": cell, "blob_sha": blob_sha, "created_at": now, "updated_at": now}
    upsert(session, Snapshot, values, ["node_id", "cell"], {"blob_sha": blob_sha, "updated_at": now})
    dropped = Snapshot.node_id == node_id, Snapshot.cell <= cell - keep
    shas = set(session.scalars(select(Snapshot.blob_sha).where(*dropped))) if keep else set()
    if shas:
        session.execute(delete(Snapshot).where(*dropped))
        delete_blobs(session, shas, put_before=None)
    stmt = select(Snapshot).where(Snapshot.node_id == node_id, Snapshot.cell == cell)
    return session.scalars(stmt.execution_options(populate_existing=True)).one()


def latest_snapshot(session: Session, node_id: str) -> Snapshot | None:
    stmt = select(Snapshot).where(Snapshot.node_id == node_id).order_by(Snapshot.cell.desc()).limit(1)
    return session.scalars(stmt.execution_options(populate_existing=True)).one_or_none()
