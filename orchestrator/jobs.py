"""Scheduler-friendly jobs: idempotent submission of a run by its id, and waiting for its outcome.

Idempotency holds at both layers: the store's ``create_run`` keeps the first run of an id (a second
submission gets the existing run back), and the root workflow id ``<run>/0`` is started with
``REJECT_DUPLICATE``, so Temporal never runs it twice either. A submission that created the run but
died before starting the workflow is completed by the next submission of the same id: the root's
input is rebuilt from the stored run (its deadline, models, limits and blob references).

``wait_outcome`` maps a run's state in the store to the exit codes of ``rlm wait`` (see ``ExitCode``).
``Patience`` carries a waiting command through transient errors of Temporal or the store: the run lives
on in them, so a dropped connection or a server's "please retry" is retried, with backoff, until the
command has had no answer for ``--reconnect-for`` seconds (then ``LostContact``, exit 7).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from enum import IntEnum
from typing import Any, TypeVar

import structlog
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.client import RunError, RunRequest, checked_input, ensure_tenant, new_run_id
from orchestrator.store import create_run, get_run, list_nodes, put_blob, put_text, upsert_node
from orchestrator.store.models import Run
from orchestrator.vocabulary import FINAL_STATUSES
from orchestrator.workflows import RLMNode
from orchestrator.workflows.common import search_attributes
from orchestrator.workflows.types import Limits, NodeInput, NodeResult, RunSpec, Text, root_id

log = structlog.get_logger(__name__)
T = TypeVar("T")


class ExitCode(IntEnum):
    """Exit codes of ``rlm wait`` (and of ``rlm submit`` without ``--detach``)."""

    ANSWERED = 0
    USAGE = 1
    FAILED = 2
    PAUSED = 3  # a node waits for an operator: paused, or paused because a budget is spent
    DEADLINE = 4
    ABORTED = 5
    STILL_RUNNING = 6  # --timeout ran out while the run was still going
    LOST_CONTACT = 7  # Temporal or the store did not answer for --reconnect-for; the run goes on


MEMO_QUERY_CHARS = 200
RECONNECT_S = 300.0
# What a call meets while a server restarts, fails over, sheds load or loses a connection ("something
# went wrong, please retry"); the SDK's own retries of a call give up after about 10 s.
TRANSIENT_RPC = frozenset(
    {
        RPCStatusCode.CANCELLED,
        RPCStatusCode.UNKNOWN,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.UNAVAILABLE,
    }
)
PAUSED_STATUSES = frozenset({"paused", "paused_budget"})
_FINAL_CODES = {
    "completed": ExitCode.ANSWERED,
    "failed": ExitCode.FAILED,
    "timed_out": ExitCode.DEADLINE,
    "aborted": ExitCode.ABORTED,
    "cancelled": ExitCode.ABORTED,
}


def query_memo(query: str) -> dict[str, str]:
    """The root's memo: the query's first line, shortened (the Web UI shows it with the workflow)."""
    line = (query.strip().splitlines() or [""])[0]
    return {"query": line if len(line) <= MEMO_QUERY_CHARS else line[: MEMO_QUERY_CHARS - 1] + "…"}


@dataclass(frozen=True)
class RunRecord:
    """Everything a run's root needs, by reference: what ``register_run`` writes to the store."""

    run_id: str
    tenant: str
    query_ref: str
    context_ref: str
    context_suffix: str
    model: str
    sub_model: str
    limits: Limits
    deadline_epoch_s: float
    budget_usd: Decimal | None = None
    schedule: str | None = None


def register_run(session: Session, rec: RunRecord) -> tuple[NodeInput, bool]:
    """Create the run and its root node unless the id exists; returns the root's input and ``created``.

    For an existing run the input is rebuilt from what was stored first (the first submission wins)."""
    ensure_tenant(session, rec.tenant)
    config: dict[str, Any] = {
        "model": rec.model,
        "sub_model": rec.sub_model,
        "limits": rec.limits.__dict__,
        "context_suffix": rec.context_suffix,
    }
    if rec.schedule is not None:
        config["schedule"] = rec.schedule
    run, created = create_run(
        session,
        rec.run_id,
        tenant=rec.tenant,
        query_ref=rec.query_ref,
        context_ref=rec.context_ref,
        config=config,
        deadline=datetime.fromtimestamp(rec.deadline_epoch_s, UTC),
        budget=rec.budget_usd,
        status="running",
    )
    if created:
        upsert_node(session, root_id(rec.run_id), run_id=rec.run_id, kind="root", depth=0, status="running")
    return root_input(run, rec.tenant), created


def root_input(run: Run, tenant: str) -> NodeInput:
    """The root's input as stored: a re-submission starts exactly what the first one registered."""
    config = run.config
    if run.context_ref is None or run.query_ref is None or run.deadline is None:
        raise RunError(f"run {run.run_id!r} has no stored query, context or deadline; submit another run id")
    known = {f.name for f in fields(Limits)}
    limits = Limits(**{k: v for k, v in dict(config.get("limits", {})).items() if k in known})
    spec = RunSpec(
        run.run_id, tenant, str(config["model"]), str(config["sub_model"]), run.deadline.timestamp(), limits
    )
    return NodeInput(
        spec,
        root_id(run.run_id),
        None,
        0,
        "root",
        spec.model,
        Text(blob=run.context_ref),
        str(config.get("context_suffix", ".txt")),
        Text(blob=run.query_ref),
    )


@dataclass(frozen=True)
class Submitted:
    run_id: str
    started: bool  # False: the run existed already and was not started again
    status: str


async def start_root(
    client: Client, root: NodeInput, task_queue: str, memo: dict[str, str] | None = None
) -> WorkflowHandle[RLMNode, NodeResult] | None:
    """Start the root workflow once; None when a workflow of that id exists (running or closed)."""
    try:
        return await client.start_workflow(
            RLMNode.run,
            root,
            id=root.node_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=search_attributes(root.run, 0, "running"),
            memo=memo,
        )
    except WorkflowAlreadyStartedError:
        return None


async def submit_run(
    client: Client, sessions: sessionmaker[Session], req: RunRequest, task_queue: str
) -> Submitted:
    inp = checked_input(req)
    run_id = req.run_id or new_run_id()
    with sessions.begin() as session:
        rec = RunRecord(
            run_id,
            req.tenant,
            put_text(session, inp.query),
            put_blob(session, inp.context),
            inp.context_suffix,
            req.model,
            req.sub_model,
            req.limits,
            time.time() + req.deadline_s,
            req.budget_usd,
        )
        root, created = register_run(session, rec)
        status = get_run(session, run_id).status
    if status in FINAL_STATUSES:
        log.info("submit.exists", run_id=run_id, status=status)
        return Submitted(run_id, False, status)
    handle = await start_root(client, root, task_queue, query_memo(req.query))
    log.info("submit.done", run_id=run_id, created=created, started=handle is not None)
    return Submitted(run_id, handle is not None, status)


@dataclass(frozen=True)
class WaitOutcome:
    run_id: str
    status: str
    code: ExitCode
    paused: list[str]


def wait_outcome(sessions: sessionmaker[Session], run_id: str) -> WaitOutcome | None:
    """The run's outcome now, or None while it is still going (no node waits for an operator)."""
    with sessions() as session:
        run = get_run(session, run_id)
        code = _FINAL_CODES.get(run.status)
        if code is not None:
            return WaitOutcome(run_id, run.status, code, [])
        paused = [n.node_id for n in list_nodes(session, run_id) if n.status in PAUSED_STATUSES]
    if paused or run.status in PAUSED_STATUSES:
        return WaitOutcome(run_id, run.status, ExitCode.PAUSED, paused)
    return None


def run_status(sessions: sessionmaker[Session], run_id: str) -> str:
    with sessions() as session:
        return get_run(session, run_id).status


async def wait_for_run(
    sessions: sessionmaker[Session],
    run_id: str,
    timeout_s: float | None,
    poll_s: float = 0.5,
    reconnect_s: float = RECONNECT_S,
) -> WaitOutcome:
    """Block until the run ends or needs an operator; ``STILL_RUNNING`` when ``timeout_s`` runs out,
    ``LostContact`` when the store does not answer for ``reconnect_s``."""
    patience = Patience(run_id, reconnect_s)
    end = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        outcome = await patience.call("the store", lambda: asyncio.to_thread(wait_outcome, sessions, run_id))
        if outcome is not None:
            return outcome
        if end is not None and time.monotonic() >= end:
            status = await patience.call("the store", lambda: asyncio.to_thread(run_status, sessions, run_id))
            return WaitOutcome(run_id, status, ExitCode.STILL_RUNNING, [])
        await asyncio.sleep(poll_s if end is None else max(0.0, min(poll_s, end - time.monotonic())))


def transient(exc: BaseException) -> bool:
    """An error that says nothing about the run: retrying the same call may well succeed."""
    if isinstance(exc, RPCError):
        return exc.status in TRANSIENT_RPC
    return isinstance(exc, OperationalError | InterfaceError)


class LostContact(Exception):
    """Temporal or the store did not answer for ``--reconnect-for``; the run itself goes on."""

    def __init__(self, run_id: str, what: str, waited_s: float, cause: BaseException) -> None:
        lines = str(cause).strip().splitlines()
        super().__init__(
            f"no answer from {what} for {waited_s:.0f} s ({lines[0] if lines else type(cause).__name__}); "
            f"run {run_id} goes on: follow it with `rlm wait {run_id}`"
        )
        self.run_id = run_id


class Patience:
    """Retries calls through transient errors, with backoff, until nothing has succeeded for
    ``reconnect_s`` seconds; then ``LostContact``. Any other error is raised at once."""

    def __init__(self, run_id: str, reconnect_s: float) -> None:
        self.run_id = run_id
        self.reconnect_s = reconnect_s
        self._failing_since: float | None = None

    async def call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        delay = 0.5
        while True:
            try:
                result = await fn()
            except Exception as exc:
                if not transient(exc):
                    raise
                await self._backoff(what, exc, delay)
                delay = min(delay * 2, 10.0)
                continue
            if self._failing_since is not None:
                log.warning("contact.back", run_id=self.run_id, what=what)
                self._failing_since = None
            return result

    async def _backoff(self, what: str, exc: Exception, delay: float) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
            log.warning(
                "contact.lost", run_id=self.run_id, what=what, error=str(exc), retry_for_s=self.reconnect_s
            )
        waited = now - self._failing_since
        if waited >= self.reconnect_s:
            raise LostContact(self.run_id, what, waited, exc) from None
        await asyncio.sleep(min(delay, self.reconnect_s - waited))
