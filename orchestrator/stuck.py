"""``rlm stuck``: running nodes with no progress for a while, or a step retrying again and again.

Progress is what the store recorded (a node's last step or status change); attempts come from
Temporal's pending activities and, for leaf calls (local activities, which Temporal does not list),
from the store.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus

from orchestrator.control import describe
from orchestrator.ids import quoted
from orchestrator.runs.root_probe import closed_as, resume_or_abort
from orchestrator.store import get_node, get_run, get_tenant, list_runs, list_steps, retrying_nodes
from orchestrator.store.errors import NotFound
from orchestrator.vocabulary import PAUSED_STATUSES, Status
from orchestrator.workflows.types import root_id

# The statuses of a run that is still going; a run in one of them needs its root workflow running.
GOING = (Status.RUNNING, *sorted(PAUSED_STATUSES))
MAX_RUNS = 10_000


@dataclass(frozen=True)
class StuckNode:
    node_id: str
    run_id: str
    status: str
    idle_s: float
    reason: str


async def stuck(
    client: Client,
    sessions: sessionmaker[Session],
    *,
    idle_s: float,
    attempts: int,
    run_id: str | None = None,
    tenant: str | None = None,
) -> list[StuckNode]:
    """Running nodes with no progress for ``idle_s`` or a model call or activity on attempt >= ``attempts``.

    Progress is the node's last recorded step or status change in the store (its start when it has
    none); attempts come from Temporal's pending activities, with the last failure as the reason, and
    from the store for leaf calls (local activities, which Temporal does not list as pending). Runs the
    store shows going whose root workflow has closed are listed too. An unknown ``run_id`` is
    ``NotFound``, an unknown ``tenant`` ``UnknownTenant``."""
    _check_filters(sessions, run_id, tenant)
    query = 'ExecutionStatus = "Running" AND WorkflowType IN ("RLMNode", "Leaf")'
    if run_id is not None:
        query += f" AND RlmRunId = {quoted(run_id)}"
    if tenant is not None:
        query += f" AND RlmTenant = {quoted(tenant)}"
    now = datetime.now(UTC)
    found: list[StuckNode] = []
    running: set[str] = set()
    async for wf in client.list_workflows(query):
        desc = await describe(client, wf.id)
        if desc is None or desc.status != WorkflowExecutionStatus.RUNNING:
            continue
        running.add(wf.id)
        raw = desc.raw_description
        reasons: list[str] = []
        for act in raw.pending_activities:
            if act.attempt >= attempts:
                why = f"activity {act.activity_type.name} on attempt {act.attempt}"
                if act.HasField("last_failure") and act.last_failure.message:
                    why += f": {act.last_failure.message.splitlines()[0][:200]}"
                reasons.append(why)
        status, last = _progress(sessions, wf.id)
        last = last or desc.start_time or now
        idle = (now - last).total_seconds()
        if idle >= idle_s:
            doing = _doing(status, len(raw.pending_activities), len(raw.pending_children))
            reasons.append(f"no progress for {_duration(idle)} ({doing})")
        if reasons:
            run = wf.id.rsplit("/", 1)[0]
            found.append(StuckNode(wf.id, run, status, round(idle, 1), "; ".join(reasons)))
    found += await _closed_roots(client, sessions, run_id, tenant, running)
    return sorted(_with_retrying_calls(sessions, found, attempts, run_id, tenant), key=lambda s: s.node_id)


async def _closed_roots(
    client: Client,
    sessions: sessionmaker[Session],
    run_id: str | None,
    tenant: str | None,
    running: set[str],
) -> list[StuckNode]:
    """Runs the store shows going whose root workflow Temporal has closed (terminated outside the
    engine) or does not have (its history deleted, or another server): nothing will ever end them.
    ``running``: workflows just described running, not asked about again."""
    with sessions() as session:
        if run_id is not None:
            run = get_run(session, run_id)
            mine = tenant is None or run.tenant_id == get_tenant(session, tenant).id
            going = [run] if mine and run.status in GOING else []
        else:
            going = [
                run
                for status in GOING
                for run, _ in list_runs(session, tenant=tenant, status=status, limit=MAX_RUNS)
            ]
    now = datetime.now(UTC)
    found: list[StuckNode] = []
    for run in going:
        root = root_id(run.run_id)
        if root in running:
            continue
        desc = await describe(client, root)
        if desc is not None and desc.status == WorkflowExecutionStatus.RUNNING:
            continue
        with sessions() as session:
            if get_run(session, run.run_id).status not in GOING:
                continue  # it ended while we looked: its root recorded the end, then closed
        rid = run.run_id
        if desc is None:
            why = (
                f"the store shows it {run.status} but Temporal has no workflow {root}: check "
                f"TEMPORAL_ADDRESS; if its history is gone, `rlm abort {rid} --include-missing` "
                "records its end"
            )
        else:
            why = f"the store shows it {run.status} but its workflow is {closed_as(desc.status)} in Temporal"
            why += ": " + resume_or_abort(rid)
        idle = round((now - run.updated_at).total_seconds(), 1)
        found.append(StuckNode(root, rid, run.status, idle, why))
    return found


def _check_filters(sessions: sessionmaker[Session], run_id: str | None, tenant: str | None) -> None:
    """A mistyped run id or tenant would otherwise look like one with nothing stuck."""
    with sessions() as session:
        if tenant is not None:
            get_tenant(session, tenant)  # UnknownTenant says how to see the tenants
        if run_id is not None:
            try:
                get_run(session, run_id)
            except NotFound:
                raise NotFound("run", run_id, "check the id with `rlm runs`") from None


def _with_retrying_calls(
    sessions: sessionmaker[Session],
    found: list[StuckNode],
    attempts: int,
    run_id: str | None,
    tenant: str | None,
) -> list[StuckNode]:
    """Add the model calls the store sees retrying: leaf calls are local activities, which Temporal's
    pending activities do not show (an inline leaf has no workflow at all)."""
    by_id = {s.node_id: s for s in found}
    now = datetime.now(UTC)
    with sessions() as session:
        retrying = retrying_nodes(session, attempts, run_id=run_id, tenant=tenant)
    for node in retrying:
        why = f"model call on attempt {node.attempts}"
        if node.error:
            why += f": {node.error.splitlines()[0][:200]}"
        known = by_id.get(node.node_id)
        if known is None:
            idle = round((now - node.updated_at).total_seconds(), 1)
            by_id[node.node_id] = StuckNode(node.node_id, node.run_id, node.status, idle, why)
        elif "on attempt" not in known.reason:  # Temporal's view of a pending activity comes first
            by_id[node.node_id] = dataclasses.replace(known, reason=f"{why}; {known.reason}")
    return list(by_id.values())


def _progress(sessions: sessionmaker[Session], node_id: str) -> tuple[str, datetime | None]:
    with sessions() as session:
        try:
            node = get_node(session, node_id)
        except NotFound:
            return Status.RUNNING, None
        times = [node.updated_at, *(s.created_at for s in list_steps(session, node_id))]
        return node.status, max(times)


def _doing(status: str, activities: int, children: int) -> str:
    if status in PAUSED_STATUSES:
        return f"{status}: waiting for `rlm resume`"
    if children:
        return f"waiting for {children} sub-call(s)"
    if activities:
        return f"{activities} activity(ies) in flight"
    return "no activity in flight: is a worker serving the task queue?"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
