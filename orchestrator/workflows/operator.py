"""What operators tell a node (``pause``, ``resume``, ``abort``) and the one way a node waits for them.

Every hold of ``RLMNode`` and ``Leaf`` — paused by an operator before a step, a sub-call held while a
pause is in force, a budget refusal of a model call or of an inline leaf — is ``await_operator``: wait
until the operator lets go or aborts, or the run's deadline passes. Deterministic code only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from temporalio import workflow

from orchestrator.workflows import common
from orchestrator.workflows.types import RunSpec


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
