"""Waiting for a run: its outcome as ``rlm wait``'s exit code, through transient errors.

``wait_outcome`` maps a run's state in the store to the exit codes of ``rlm wait`` (see ``ExitCode``).
``Patience`` carries a waiting command through transient errors of Temporal or the store: the run lives
on in them, so a dropped connection or a server's "please retry" is retried, with backoff, until the
command has had no answer for ``--reconnect-for`` seconds (then ``LostContact``, exit 7).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, TypeVar

import structlog
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.runs.inspect import RunSummary, run_summary
from orchestrator.runs.root_probe import RootProbe, resume_or_abort
from orchestrator.store import get_run, list_nodes
from orchestrator.store.progress import node_counts
from orchestrator.vocabulary import FINAL_STATUSES, PAUSED_STATUSES, Status
from orchestrator.workflows.types import root_id

if TYPE_CHECKING:
    from orchestrator.settings import Settings

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
    # Temporal closed the run's root (terminated, timed out) without the engine recording its end: the
    # store shows the run going, and nothing will move it until an operator resumes or aborts it.
    STOPPED = 8


RECONNECT_S = 300.0
# The calls an ended run had in flight (leaves cancelled with their parent by an abort, a failure or the
# deadline) settle a moment after its root ends: its summary waits up to this long for them, so that the
# cost it shows is the final one.
SETTLE_S = 10.0
SETTLE_POLL_S = 0.1
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
_FINAL_CODES = {
    Status.COMPLETED: ExitCode.ANSWERED,
    Status.FAILED: ExitCode.FAILED,
    Status.TIMED_OUT: ExitCode.DEADLINE,
    Status.ABORTED: ExitCode.ABORTED,
    Status.CANCELLED: ExitCode.ABORTED,
}


@dataclass(frozen=True)
class WaitOutcome:
    run_id: str
    status: str
    code: ExitCode
    paused: list[str]
    reason: str | None = None  # why an operator must act (``STOPPED``)


def wait_outcome(
    sessions: sessionmaker[Session], run_id: str, through_pauses: bool = False
) -> WaitOutcome | None:
    """The run's outcome now, or None while it is still going (no node waits for an operator, or
    ``through_pauses``: ``rlm watch`` stays with a paused run until it ends)."""
    with sessions() as session:
        run = get_run(session, run_id)
        code = _FINAL_CODES.get(Status(run.status))
        if code is not None:
            return WaitOutcome(run_id, run.status, code, [])
        if through_pauses:
            return None
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
    through_pauses: bool = False,
    probe: RootProbe | None = None,
) -> WaitOutcome:
    """Block until the run ends or needs an operator; ``STILL_RUNNING`` when ``timeout_s`` runs out,
    ``LostContact`` when the store does not answer for ``reconnect_s``, ``STOPPED`` when ``probe`` finds
    the run's root closed in Temporal while the store still shows the run going."""
    patience = Patience(run_id, reconnect_s)
    end = None if timeout_s is None else time.monotonic() + timeout_s

    async def read() -> WaitOutcome | None:
        return await patience.call(
            "the store", lambda: asyncio.to_thread(wait_outcome, sessions, run_id, through_pauses)
        )

    async def status() -> str:
        return await patience.call("the store", lambda: asyncio.to_thread(run_status, sessions, run_id))

    while True:
        outcome = await read()
        if outcome is not None:
            return outcome
        how = None if probe is None else await probe.closed()
        if how is not None:
            # Read again: a root records its end, then closes, so a close seen first may be an ordinary end.
            outcome = await read()
            if outcome is None:
                outcome = _stopped(run_id, await status(), how)
            return outcome
        if end is not None and time.monotonic() >= end:
            return WaitOutcome(run_id, await status(), ExitCode.STILL_RUNNING, [])
        await asyncio.sleep(poll_s if end is None else max(0.0, min(poll_s, end - time.monotonic())))


def _stopped(run_id: str, status: str, how: str) -> WaitOutcome:
    log.warning("wait.root_closed", run_id=run_id, workflow_id=root_id(run_id), temporal_status=how)
    return WaitOutcome(run_id, status, ExitCode.STOPPED, [], stopped_reason(run_id, status, how))


def stopped_reason(run_id: str, status: str, how: str) -> str:
    """Why a run the store shows ``status`` will not move: its root closed ``how`` in Temporal."""
    return (
        f"its workflow {root_id(run_id)} is {how} in Temporal but the store shows the run {status}: "
        + resume_or_abort(run_id)
    )


async def stopped_now(settings: Settings, sessions: sessionmaker[Session], run_id: str) -> str | None:
    """``rlm status`` of a run the store shows going: one look at Temporal; the reason (as ``rlm wait``
    gives it) when the root has closed without recording an end, else None (also when Temporal cannot
    be asked: the probe says so on stderr)."""
    how = await RootProbe(settings, run_id, every_s=0).closed()
    if how is None:
        return None
    # A root records its end, then closes: a close seen after the store was read may be an ordinary end.
    status = await asyncio.to_thread(run_status, sessions, run_id)
    return None if status in FINAL_STATUSES else stopped_reason(run_id, status, how)


async def settled(
    sessions: sessionmaker[Session],
    run_id: str,
    timeout_s: float | None,
    reconnect_s: float = RECONNECT_S,
    through_pauses: bool = False,
    probe: RootProbe | None = None,
) -> tuple[WaitOutcome, RunSummary]:
    """``rlm wait``: the outcome (see ``wait_for_run``) and the run's summary."""
    outcome = await wait_for_run(
        sessions, run_id, timeout_s, reconnect_s=reconnect_s, through_pauses=through_pauses, probe=probe
    )
    return outcome, await read_summary(sessions, Patience(run_id, reconnect_s))


async def read_summary(
    sessions: sessionmaker[Session], patience: Patience, settle_s: float = SETTLE_S
) -> RunSummary:
    """The run's summary, read through the store's transient errors. Of an ended run, read once the calls
    it had in flight have settled and every node has recorded its end, or after ``settle_s``: then
    ``reserved`` is what they still hold."""
    end = time.monotonic() + settle_s
    while True:
        summary = await patience.call(
            "the store", lambda: asyncio.to_thread(run_summary, sessions, patience.run_id)
        )
        if summary.status not in FINAL_STATUSES or time.monotonic() >= end:
            return summary
        if not summary.reserved and not await asyncio.to_thread(_open_nodes, sessions, patience.run_id):
            return summary
        await asyncio.sleep(SETTLE_POLL_S)


def _open_nodes(sessions: sessionmaker[Session], run_id: str) -> int:
    with sessions() as session:
        counts = node_counts(session, run_id)
    return sum(count for (status, _), count in counts.items() if status not in FINAL_STATUSES)


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
