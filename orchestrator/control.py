"""Operator controls over running trees: pause, resume (an ended node is restarted:
``orchestrator.runs.restart``), abort and budget raises; ``orchestrator.stuck`` lists stuck nodes. The
``rlm`` commands in ``cli/control_cmds.py`` call these.

A target is a run id (no ``/``) or a node id (``<run>/0.3.1``); a run stands for its whole tree and a
node for its subtree. Nodes are found both in Temporal's visibility (running workflows carrying the
``RlmRunId`` search attribute) and in the store (nodes not yet final), because visibility is
eventually consistent and the store lags the workflow by a step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import structlog
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.errors import RlmError
from orchestrator.ids import check_target, in_subtree, quoted
from orchestrator.runs.restart import NODE_TYPES, restart
from orchestrator.store import (
    end_node,
    get_node,
    get_run,
    get_tenant,
    list_nodes,
    release_open,
    request_abort,
    set_run_budget,
    set_tenant_budget,
)
from orchestrator.store.errors import NotFound
from orchestrator.vocabulary import FINAL_STATUSES, PAUSED_STATUSES, NodeKind, Status
from orchestrator.workflows.types import root_id

log = structlog.get_logger(__name__)
CLOSE_POLL_S = 0.2
RUNNING = WorkflowExecutionStatus.RUNNING


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
        return in_subtree(workflow_id, self.top)

    def __str__(self) -> str:
        return self.node_id or self.run_id


def parse_target(text: str) -> Target:
    """``RUN`` or ``RUN/0.3.1``; anything else is a one-line ``BadId`` (the rule: ``ids.check_target``)."""
    text = check_target(text.strip())
    run_id, slash, _ = text.partition("/")
    return Target(run_id, text if slash else None)


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
                found.setdefault(node.node_id, "Leaf" if node.kind == NodeKind.LEAF else "RLMNode")
    return found


async def describe(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
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


def _no_workflow(sessions: sessionmaker[Session], target: Target) -> str:
    """Why Temporal has no workflow to resume for ``target``, and what to do instead."""
    missing = f"Temporal has no workflow {target.top}"
    if target.node_id is not None:
        with sessions() as session:
            node = get_node(session, target.node_id)
        if node.kind == NodeKind.LEAF and node.parent_id is not None:
            # An inline leaf (a wide batch's, or any with --leaf-mode inline) ran inside its parent.
            return (
                f"{missing}: a leaf that ran inline has none of its own; resume its parent {node.parent_id} "
                "(its finished calls are not paid again), or check TEMPORAL_ADDRESS"
            )
    return f"{missing}; check TEMPORAL_ADDRESS and the id"


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
    desc = await describe(client, target.top)
    if desc is None:
        raise ControlError(_no_workflow(sessions, target))
    if desc.status == WorkflowExecutionStatus.RUNNING:
        nodes = await live_nodes(client, sessions, target)
        return ResumeReport(await _signal_all(client, nodes, "resume"), None)
    return ResumeReport([], await restart(client, sessions, desc, deadline_s))


# --- abort ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AbortReport:
    cancelled: list[str]
    still_running: list[str]  # empty unless the wait ran out
    containers_removed: int | None  # None: no Docker engine reachable from here
    # Nodes the store showed open although their workflows had closed (terminated outside the
    # engine): recorded aborted here, their holds released.
    settled: list[str]
    # Reservations of the ended run that no call would ever close (a whole-run target only).
    holds_released: int


async def abort(
    client: Client,
    sessions: sessionmaker[Session],
    target: Target,
    wait_s: float = 60.0,
    include_missing: bool = False,
) -> AbortReport:
    """Cancel every running workflow under ``target``, wait until none runs, remove leftover sandbox
    containers of those nodes (the nodes remove their own; this catches a worker that died).
    ``include_missing``: also record the end of open nodes whose workflows Temporal does not have at all
    (see ``_record_ended``)."""
    _require_run(sessions, target)
    # First, so that workers stop the target's model calls in flight within a second (the cancel
    # reaches a call only when it returns or at its workflow task's heartbeat, see abort_watch).
    with sessions.begin() as session:
        request_abort(session, target.top)
    loop = asyncio.get_running_loop()
    end = loop.time() + wait_s
    cancelled: set[str] = set()
    while True:
        # Only what runs is cancelled: the server accepts a cancel of a closed workflow without a word.
        still = await _still_running(client, await live_nodes(client, sessions, target))
        todo = [wid for wid in still if wid not in cancelled]
        results = await asyncio.gather(*(_cancel(client, wid) for wid in todo))
        cancelled.update(wid for wid, ok in zip(todo, results, strict=True) if ok)
        if not still or loop.time() >= end:
            break
        await asyncio.sleep(0.5)
    settled, released = ([], 0) if still else await _record_ended(client, sessions, target, include_missing)
    containers = _remove_containers(sessions, target)
    return AbortReport(sorted(cancelled), sorted(still), containers, settled, released)


async def _record_ended(
    client: Client, sessions: sessionmaker[Session], target: Target, include_missing: bool
) -> tuple[list[str], int]:
    """Once nothing under ``target`` runs: record aborted each node the store shows open whose workflow
    Temporal has closed without its end being recorded (terminated), so no code ever will. Of a whole
    run that has ended, release what it still reserves: no call of it will settle or release that
    (holds an earlier version leaked). Returns the nodes recorded and how many reservations were released.

    Only a workflow Temporal has, closed, counts: one it does not have may run on another server (a
    mistyped ``TEMPORAL_ADDRESS``), unless ``include_missing`` (the operator knows its history is gone:
    retention, a lost server). An inline leaf's workflow is its parent's, which records it."""
    with sessions() as session:
        open_ids = [
            n.node_id
            for n in list_nodes(session, target.run_id)
            if n.status not in FINAL_STATUSES and target.covers(n.node_id)
        ]
    seen: dict[str, WorkflowExecutionStatus | None] = {}
    kept = (RUNNING,) if include_missing else (None, RUNNING)
    closed = [i for i in open_ids if await _owner_status(client, i, seen) not in kept]
    root_running = await _owner_status(client, target.top, seen) == RUNNING
    reason = "aborted by an operator after its workflow had ended without recording it (terminated?)"
    if include_missing:
        reason = "aborted by an operator after its workflow had ended or vanished without recording it"
    with sessions.begin() as session:
        nodes = {n.node_id: n for n in list_nodes(session, target.run_id)}
        ended = [nodes[i] for i in closed if i in nodes and nodes[i].status not in FINAL_STATUSES]
        for node in ended:
            end_node(
                session, run_id=target.run_id, node_id=node.node_id, status=Status.ABORTED,
                root=node.kind == NodeKind.ROOT, error=reason,
            )  # fmt: skip
        # The run's own record says it ended: true on whichever server it ran.
        ended_run = (
            target.node_id is None
            and not root_running
            and get_run(session, target.run_id).status in FINAL_STATUSES
        )
        released = release_open(session, run_id=target.run_id, key_prefix="") if ended_run else 0
    ids = sorted(n.node_id for n in ended)
    if ids or released:
        log.warning("abort.recorded_ended_nodes", run_id=target.run_id, nodes=ids, holds_released=released)
    return ids, released


async def _owner_status(
    client: Client, node_id: str, seen: dict[str, WorkflowExecutionStatus | None]
) -> WorkflowExecutionStatus | None:
    """The status of the workflow that records ``node_id``'s end: its own, else (an inline leaf) its
    nearest ancestor's; None when Temporal has none of them."""
    workflow_id = node_id
    while True:
        if workflow_id not in seen:
            desc = await describe(client, workflow_id)
            seen[workflow_id] = None if desc is None else desc.status
        status = seen[workflow_id]
        if status is not None:
            return status
        run_id, _, path = workflow_id.partition("/")
        if "." not in path:
            return None
        workflow_id = f"{run_id}/{path.rpartition('.')[0]}"


async def until_closed(
    client: Client, sessions: sessionmaker[Session], target: Target, wait_s: float
) -> list[str]:
    """Wait until no workflow under ``target`` runs in Temporal, at most ``wait_s``; what still runs then.

    A node records its end in the store a step before its workflow closes: a worker that stops on the
    store's word may leave that workflow open, on a queue nobody serves once it is ``rlm run``'s own."""
    loop = asyncio.get_running_loop()
    end = loop.time() + wait_s
    while True:
        still = await _still_running(client, await live_nodes(client, sessions, target))
        if not still or loop.time() >= end:
            return still
        await asyncio.sleep(CLOSE_POLL_S)


async def _still_running(client: Client, workflow_ids: Iterable[str]) -> list[str]:
    ids = sorted(workflow_ids)
    running = await asyncio.gather(*(_is_running(client, wid) for wid in ids))
    return [wid for wid, yes in zip(ids, running, strict=True) if yes]


async def _cancel(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).cancel()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND or "already completed" in exc.message:
            return False
        raise
    return True


async def _is_running(client: Client, workflow_id: str) -> bool:
    desc = await describe(client, workflow_id)
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
            paused = [n.node_id for n in list_nodes(session, run_name) if n.status in PAUSED_STATUSES]
    return BudgetRaise(scope, name, before, before + amount, paused)
