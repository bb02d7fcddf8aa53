"""Operator controls over running trees: pause, resume (including restarting an ended node), abort,
budget raises and the list of stuck nodes. The ``rlm`` commands in ``cli/control_cmds.py`` call these.

A target is a run id (no ``/``) or a node id (``<run>/0.3.1``); a run stands for its whole tree and a
node for its subtree. Nodes are found both in Temporal's visibility (running workflows carrying the
``RlmRunId`` search attribute) and in the store (nodes not yet final), because visibility is
eventually consistent and the store lags the workflow by a step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import structlog
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.errors import RlmError
from orchestrator.ids import quoted
from orchestrator.store import (
    get_node,
    get_run,
    get_tenant,
    list_nodes,
    list_steps,
    put_text,
    retrying_nodes,
    set_node_status,
    set_run_budget,
    set_run_status,
    set_tenant_budget,
)
from orchestrator.store.errors import NotFound
from orchestrator.vocabulary import FINAL_STATUSES
from orchestrator.workflows.common import search_attributes
from orchestrator.workflows.types import (
    COMPLETED,
    INLINE_CHARS,
    PAUSED,
    PAUSED_BUDGET,
    RUNNING,
    Carry,
    LeafInput,
    NodeInput,
    NodeResult,
    Text,
    root_id,
)

log = structlog.get_logger(__name__)

NODE_TYPES = ("RLMNode", "Leaf")
_NODE_PATH = re.compile(r"0(\.[1-9][0-9]*)*")


class ControlError(RlmError):
    """An operator command cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    run_id: str
    node_id: str | None  # None: the whole run

    @property
    def top(self) -> str:
        return self.node_id or root_id(self.run_id)

    def covers(self, workflow_id: str) -> bool:
        return workflow_id == self.top or workflow_id.startswith(self.top + ".")

    def __str__(self) -> str:
        return self.node_id or self.run_id


def parse_target(text: str) -> Target:
    """``RUN`` or ``RUN/0.3.1``; anything else is a one-line error."""
    text = text.strip()
    if not text:
        raise ControlError("give a run id (e.g. run-20261121-101500-ab12cd) or a node id (RUN/0.3.1)")
    if "/" not in text:
        return Target(text, None)
    run_id, _, path = text.partition("/")
    if not run_id or not _NODE_PATH.fullmatch(path):
        raise ControlError(
            f"{text!r} is not a node id; a node id is the run id, '/', then the tree path, "
            f"e.g. {run_id or 'RUN'}/0.3.1"
        )
    return Target(run_id, text)


# --- finding the nodes of a target ----------------------------------------------------------------


async def live_nodes(client: Client, sessions: sessionmaker[Session], target: Target) -> dict[str, str]:
    """Workflow id -> workflow type of every running node under ``target``."""
    found: dict[str, str] = {}
    query = f'RlmRunId = {quoted(target.run_id)} AND ExecutionStatus = "Running"'
    async for wf in client.list_workflows(query):
        if target.covers(wf.id) and wf.workflow_type in NODE_TYPES:
            found[wf.id] = wf.workflow_type
    with sessions() as session:
        for node in list_nodes(session, target.run_id):
            if node.status not in FINAL_STATUSES and target.covers(node.node_id):
                found.setdefault(node.node_id, "Leaf" if node.kind == "leaf" else "RLMNode")
    return found


async def _describe(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    try:
        return await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def _signal(client: Client, workflow_id: str, name: str) -> bool:
    """Signal a workflow; False when it is not running (any more)."""
    try:
        await client.get_workflow_handle(workflow_id).signal(name)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND or "already completed" in exc.message:
            return False
        raise
    return True


async def _signal_all(client: Client, ids: Iterable[str], name: str) -> list[str]:
    ids = sorted(ids)
    sent = await asyncio.gather(*(_signal(client, wid, name) for wid in ids))
    return [wid for wid, ok in zip(ids, sent, strict=True) if ok]


def _require_run(sessions: sessionmaker[Session], target: Target) -> None:
    with sessions() as session:
        try:
            get_run(session, target.run_id)
            if target.node_id is not None:
                get_node(session, target.node_id)
        except NotFound:
            raise ControlError(
                f"{target} is not known to the store; check the id with `rlm tree RUN`"
            ) from None


# --- pause / resume --------------------------------------------------------------------------------


async def pause(client: Client, sessions: sessionmaker[Session], target: Target) -> list[str]:
    """Ask every running RLM node under ``target`` to hold before its next step; returns their ids.

    Each node also passes the pause on to its running RLM children, so nodes this listing misses
    (started a moment ago, not yet visible) hold too; the duplicates are harmless. Leaves are single
    model calls: the ones in flight finish, new ones are not started while their parent's pause holds."""
    _require_run(sessions, target)
    nodes = await live_nodes(client, sessions, target)
    return await _signal_all(client, [w for w, t in nodes.items() if t == "RLMNode"], "pause")


@dataclass(frozen=True)
class ResumeReport:
    signalled: list[str]  # running nodes told to go on
    restarted: str | None  # an ended node started again from its last completed iteration


async def resume(
    client: Client, sessions: sessionmaker[Session], target: Target, deadline_s: float | None = None
) -> ResumeReport:
    """Running target: signal ``resume`` to its paused nodes. Ended (failed, timed out, terminated,
    aborted) target: restart it from its last completed iteration (see ``restart``)."""
    _require_run(sessions, target)
    desc = await _describe(client, target.top)
    if desc is None:
        raise ControlError(f"Temporal has no workflow {target.top}; check TEMPORAL_ADDRESS and the id")
    if desc.status == WorkflowExecutionStatus.RUNNING:
        nodes = await live_nodes(client, sessions, target)
        return ResumeReport(await _signal_all(client, nodes, "resume"), None)
    return ResumeReport([], await restart(client, sessions, desc, deadline_s))


async def restart(
    client: Client,
    sessions: sessionmaker[Session],
    desc: WorkflowExecutionDescription,
    deadline_s: float | None = None,
) -> str:
    """Start an ended node again under the same workflow id and input.

    Its recorded steps are found by key and not paid again: an RLM node continues after its last
    completed iteration (the ``Carry`` built from the store), its sandbox restores the last REPL
    snapshot, cells already recorded in the interrupted iteration are skipped (their children keep
    their ids), and re-asked sub-calls reach the same child ids, whose recorded answers come back free.
    """
    handle = client.get_workflow_handle(desc.id, result_type=NodeResult)
    if desc.status == WorkflowExecutionStatus.COMPLETED:
        result = await handle.result()
        if result.status == COMPLETED:
            raise ControlError(f"{desc.id} completed; there is nothing to resume")
    history = await handle.fetch_history()
    started = history.events[0]
    if started.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        raise ControlError(f"the history of {desc.id} does not begin with its start; cannot restart it")
    attrs = started.workflow_execution_started_event_attributes
    kind = attrs.workflow_type.name
    if kind not in NODE_TYPES:
        raise ControlError(f"{desc.id} is a {kind} workflow, not a node; only nodes can be resumed")
    input_type: type[NodeInput] | type[LeafInput] = NodeInput if kind == "RLMNode" else LeafInput
    (inp,) = await client.data_converter.decode(attrs.input.payloads, [input_type])
    run = inp.run
    if deadline_s is not None:
        run = dataclasses.replace(run, deadline_epoch_s=time.time() + deadline_s)
    elif run.deadline_epoch_s <= time.time():
        passed = datetime.fromtimestamp(run.deadline_epoch_s, UTC)
        raise ControlError(
            f"the run's deadline passed at {passed:%Y-%m-%d %H:%M:%S} UTC; "
            "give --deadline SECONDS to let the restarted node run that long"
        )
    inp = dataclasses.replace(inp, run=run)
    with sessions.begin() as session:
        if isinstance(inp, NodeInput):
            inp = dataclasses.replace(inp, carry=resume_carry(session, inp.node_id, inp.carry))
        set_node_status(session, inp.node_id, RUNNING)
        if inp.parent_id is None:
            set_run_status(session, run.run_id, RUNNING)
    memo = await desc.memo()
    sa = search_attributes(run, inp.depth, RUNNING)
    queue, reuse = attrs.task_queue.name, WorkflowIDReusePolicy.ALLOW_DUPLICATE
    # Restarted under the workflow type its history started with.
    await client.start_workflow(
        kind,
        inp,
        id=desc.id,
        task_queue=queue,
        id_reuse_policy=reuse,
        search_attributes=sa,
        memo=memo,
    )
    log.info("node.restarted", node_id=desc.id, carry=getattr(inp, "carry", None) is not None)
    return desc.id


def resume_carry(session: Session, node_id: str, base: Carry | None) -> Carry | None:
    """Where a restarted RLM node goes on: after its last iteration whose cells all finished.

    Every iteration before the last one with a recorded model reply is complete (the node only asks
    for the next reply after the cells of the last one). None: start at iteration 1 (nothing is lost:
    recorded steps are found again)."""
    steps = list_steps(session, node_id)
    generated = [s.iteration for s in steps if s.kind == "generate"]
    if not generated:
        return base
    last = max(generated) - 1
    if last <= (base.iteration if base is not None else 0):
        return base
    cells = sorted(
        (s for s in steps if s.kind == "cell" and s.iteration <= last), key=lambda s: (s.iteration, s.index)
    )
    children = max(
        (int((s.data or {}).get("children_after") or 0) for s in cells),
        default=base.children if base is not None else 0,
    )
    cost = sum((s.cost for s in steps if s.kind == "generate" and s.iteration <= last), Decimal(0))
    partial: Text | None = None
    for step in cells:
        answer = (step.data or {}).get("answer")
        if isinstance(answer, str):
            partial = (
                Text(inline=answer) if len(answer) <= INLINE_CHARS else Text(blob=put_text(session, answer))
            )
    return Carry(last, len(cells), children, children, str(cost), partial)


# --- abort ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AbortReport:
    cancelled: list[str]
    still_running: list[str]  # empty unless the wait ran out
    containers_removed: int | None  # None: no Docker engine reachable from here


async def abort(
    client: Client, sessions: sessionmaker[Session], target: Target, wait_s: float = 60.0
) -> AbortReport:
    """Cancel every running workflow under ``target``, wait until none runs, remove leftover sandbox
    containers of those nodes (the nodes remove their own; this catches a worker that died)."""
    _require_run(sessions, target)
    loop = asyncio.get_running_loop()
    end = loop.time() + wait_s
    cancelled: set[str] = set()
    running: dict[str, str] = {}
    while True:
        running = await live_nodes(client, sessions, target)
        todo = sorted(set(running) - cancelled)
        results = await asyncio.gather(*(_cancel(client, wid) for wid in todo))
        cancelled.update(wid for wid, ok in zip(todo, results, strict=True) if ok)
        still = [wid for wid in running if await _is_running(client, wid)]
        if not still or loop.time() >= end:
            break
        await asyncio.sleep(0.5)
    return AbortReport(sorted(cancelled), sorted(still), _remove_containers(sessions, target))


async def _cancel(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).cancel()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND or "already completed" in exc.message:
            return False
        raise
    return True


async def _is_running(client: Client, workflow_id: str) -> bool:
    desc = await _describe(client, workflow_id)
    return desc is not None and desc.status == WorkflowExecutionStatus.RUNNING


def _remove_containers(sessions: sessionmaker[Session], target: Target) -> int | None:
    import sandbox

    with sessions() as session:
        ids = [n.node_id for n in list_nodes(session, target.run_id) if target.covers(n.node_id)]
    try:
        if target.node_id is None:
            return sandbox.reap(labels={"run": target.run_id})
        return sum(sandbox.reap(labels={"run": target.run_id, "node": nid}) for nid in ids)
    except Exception as exc:  # no Docker engine here is a normal operator setup
        log.info("containers.not_checked", reason=str(exc))
        return None


# --- budgets ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetRaise:
    scope: str  # "tenant" | "run"
    name: str
    before: Decimal
    after: Decimal
    paused: list[str]  # nodes waiting for `rlm resume`


def raise_budget(
    sessions: sessionmaker[Session], amount: Decimal, *, tenant: str | None = None, run: str | None = None
) -> BudgetRaise:
    """Add ``amount`` USD to a tenant's or a run's budget (then ``rlm resume`` lets paused nodes go on)."""
    if (tenant is None) == (run is None):
        raise ControlError("give exactly one of --tenant T or --run R")
    if not amount.is_finite() or amount <= 0:
        raise ControlError(f"the amount {amount} must be a positive number of USD, e.g. 5 or 0.50")
    with sessions.begin() as session:
        if tenant is not None:
            try:
                before = get_tenant(session, tenant).budget
            except NotFound:
                raise ControlError(f"no tenant {tenant!r}; see them with `rlm tenant show`") from None
            set_tenant_budget(session, tenant, before + amount)
            paused: list[str] = []
            scope, name = "tenant", tenant
        else:
            run_name = run or ""
            try:
                row = get_run(session, run_name)
            except NotFound:
                raise ControlError(f"no run {run_name!r}; check the id with `rlm status RUN`") from None
            if row.budget is None:
                raise ControlError(
                    f"run {run_name} has no budget of its own; it is limited by its tenant's: "
                    "raise that with --tenant"
                )
            before = row.budget
            set_run_budget(session, run_name, before + amount)
            scope, name = "run", run_name
            paused = [n.node_id for n in list_nodes(session, run_name) if n.status in (PAUSED_BUDGET, PAUSED)]
    return BudgetRaise(scope, name, before, before + amount, paused)


# --- stuck -----------------------------------------------------------------------------------------


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
    from the store for leaf calls (local activities, which Temporal does not list as pending)."""
    query = 'ExecutionStatus = "Running" AND WorkflowType IN ("RLMNode", "Leaf")'
    if run_id is not None:
        query += f" AND RlmRunId = {quoted(run_id)}"
    if tenant is not None:
        query += f" AND RlmTenant = {quoted(tenant)}"
    now = datetime.now(UTC)
    found: list[StuckNode] = []
    async for wf in client.list_workflows(query):
        desc = await _describe(client, wf.id)
        if desc is None or desc.status != WorkflowExecutionStatus.RUNNING:
            continue
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
    return sorted(_with_retrying_calls(sessions, found, attempts, run_id, tenant), key=lambda s: s.node_id)


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
            return RUNNING, None
        times = [node.updated_at, *(s.created_at for s in list_steps(session, node_id))]
        return node.status, max(times)


def _doing(status: str, activities: int, children: int) -> str:
    if status in (PAUSED, PAUSED_BUDGET):
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


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``2h``, ``1d`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        raise ControlError(f"{text!r} is not a duration; use e.g. 90s, 10m, 2h or 1d")
    factor = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(match.group(1)) * factor
