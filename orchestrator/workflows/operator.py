"""What operators tell a node (``pause``, ``resume``, ``abort``) and the one way a node waits for them.

Every hold of ``RLMNode`` and ``Leaf`` — paused by an operator before a step, a sub-call held while a
pause is in force, a budget refusal of a model call or of an inline leaf — is ``await_operator``: wait
until the operator lets go or aborts, or the run's deadline passes. A model call the worker stopped for
an abort (``Outcome.ABORTED``) is followed by ``await_cancel``. Deterministic code only.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from temporalio import workflow

from orchestrator.workflows import common
from orchestrator.workflows.types import RunSpec

# How long a node whose model call an abort stopped waits for Temporal's cancel, which `rlm abort` sends
# right after marking the store; past it (the command died in between), the node ends aborted itself.
ABORT_GRACE = timedelta(seconds=30)


class Released(StrEnum):
    """How a hold ended."""

    GO_ON = "go_on"
    ABORTED = "aborted"
    DEADLINE = "deadline"


@dataclass
class OperatorSignals:
    """The signals a node received so far."""

    # Counts `resume` signals. A budget hold ends on one that came after the refused call started: a
    # resume sent while that call was still running is not lost.
    resumes: int = 0
    abort: bool = False
    pause_requested: bool = False

    def resume(self) -> bool:
        """Count a ``resume``; True when it lifted a pause (so it is passed on to children)."""
        lifted = self.pause_requested
        self.resumes += 1
        self.pause_requested = False
        return lifted


async def await_operator(signals: OperatorSignals, run: RunSpec, *, resumed_after: int | None) -> Released:
    """Hold until an operator lets go (``GO_ON``), aborts, or the run's deadline passes.

    ``resumed_after=n``: let go on a ``resume`` after the n-th (a budget hold, an operator's pause).
    ``None``: let go as soon as no pause is requested (a sub-call held by a pause)."""

    def released() -> bool:
        if signals.abort:
            return True
        if resumed_after is None:
            return not signals.pause_requested
        return signals.resumes > resumed_after

    try:
        await workflow.wait_condition(released, timeout=common.until_deadline(run))
    except TimeoutError:  # asyncio's: wait_condition's timeout (Temporal's TimeoutError is not it)
        return Released.DEADLINE
    return Released.ABORTED if signals.abort else Released.GO_ON


async def await_cancel(run: RunSpec) -> None:
    """Wait for this workflow's cancellation after a worker stopped its model call for ``rlm abort``.

    The cancel raises ``CancelledError`` here and the node ends through its cancellation path, as any
    aborted node does. Returns when none came within ``ABORT_GRACE`` or by the deadline: the caller
    then ends the node aborted itself."""
    with contextlib.suppress(TimeoutError):  # asyncio's: wait_condition's timeout
        await workflow.wait_condition(lambda: False, timeout=min(ABORT_GRACE, common.until_deadline(run)))
