"""Whether a run's root workflow has closed in Temporal while the store still shows the run going.

A root records its end in the store, then closes. One ended from outside (``temporal workflow
terminate``, the Web UI's Terminate, a reset gone wrong) runs none of its code, so the store shows the
run going for good, and a command that waits on the store alone would wait for ever. ``RootProbe``
lets ``rlm wait``, ``rlm submit``, ``rlm watch`` and ``rlm ask`` ask Temporal now and then; the store
stays what they read, and a Temporal that cannot be reached only means they wait on the store alone.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import structlog

from orchestrator.workflows.types import root_id

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowExecutionStatus

    from orchestrator.settings import Settings

log = structlog.get_logger(__name__)

# How often a waiting command asks Temporal: one describe of one workflow, far apart enough to cost
# the server nothing, close enough that a scheduler's job does not hang on a terminated run.
PROBE_EVERY_S = 5.0
# A connect or describe that takes longer than this is given up until the next probe.
PROBE_TIMEOUT_S = 5.0
# A root Temporal does not have, this many probes running: say so once (a scheduled run's row is
# written a moment before its root starts, so one miss means nothing).
MISSING_WARN_AFTER = 3


def closed_as(status: WorkflowExecutionStatus | None) -> str:
    """How a closed workflow ended, in words (``terminated``, ``timed out``, …)."""
    return status.name.lower().replace("_", " ") if status is not None else "closed"


def resume_or_abort(run_id: str) -> str:
    """What an operator can do about a run whose root closed without recording an end."""
    return (
        f"`rlm resume {run_id}` starts it again from its last completed step, `rlm abort {run_id}` "
        "records its end"
    )


class RootProbe:
    """Asks Temporal, at most every ``every_s``, whether ``run_id``'s root has closed."""

    def __init__(
        self, settings: Settings, run_id: str, client: Client | None = None, every_s: float = PROBE_EVERY_S
    ) -> None:
        """``client``: a connection the command already has; else one is made at the first probe."""
        self.run_id = run_id
        self.root = root_id(run_id)
        self._settings = settings
        self._every_s = every_s
        self._next = time.monotonic() + every_s
        self._client = client
        self._misses = 0
        self._unreachable_said = False

    async def closed(self) -> str | None:
        """How the root's workflow ended (``terminated``, ``timed out``, …) when Temporal reports it
        closed; None while it runs, before the next probe is due, or when Temporal cannot tell."""
        if time.monotonic() < self._next:
            return None
        self._next = time.monotonic() + self._every_s
        try:
            return await asyncio.wait_for(self._ask(), PROBE_TIMEOUT_S)
        except Exception as exc:
            # Whatever failed (connecting, TLS, a timeout, a refused call), the store still answers the
            # wait: this look is an extra, never a reason to stop waiting.
            if not self._unreachable_said:
                self._unreachable_said = True
                log.warning("wait.temporal_unreachable", run_id=self.run_id, error=str(exc).split("\n")[0])
            return None

    async def _ask(self) -> str | None:
        from temporalio.client import WorkflowExecutionStatus

        from orchestrator.control import describe

        client = await self._connect()
        if client is None:
            return None
        desc = await describe(client, self.root)
        if desc is None:
            self._misses += 1
            if self._misses == MISSING_WARN_AFTER:
                log.warning(
                    "wait.root_missing", run_id=self.run_id, workflow_id=self.root,
                    hint=f"Temporal has no such workflow: check TEMPORAL_ADDRESS; if its history is gone, "
                    f"`rlm abort {self.run_id} --include-missing` ends it; waiting on the store",
                )  # fmt: skip
            return None
        self._misses = 0
        # A run continued as new goes on under the same workflow id: describe shows its latest run.
        if desc.status in (None, WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW):
            return None
        return closed_as(desc.status)

    async def _connect(self) -> Client | None:
        if self._client is None:
            from orchestrator.connection import connect
            from orchestrator.targets import shared_target

            target = await asyncio.to_thread(shared_target, self._settings)
            if target is None:
                return None  # no server outlives commands here: nothing to ask
            self._client = await connect(target)
        return self._client
