"""What stops a running cell: its ``Guard`` and the heartbeat task that ``watch``es it.

The guard holds what a running cell holds that someone else may have to stop: its sandbox session and
the sub-call it waits on. Everything touching it runs on the worker's event loop (the heartbeat task,
``release_sandbox``, the cell's own task), so deciding to stop and deciding to keep the session for the
next cell cannot interleave; only closing the session, which blocks until its container is gone, runs
in the cells' thread pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

import sandbox
from orchestrator.activities.heartbeat import HEARTBEAT_EVERY_S, beat_every_s
from orchestrator.activities.logctx import expected
from orchestrator.workflows.common import DEADLINE_PASSED

log = structlog.get_logger(__name__)

T = TypeVar("T")
# Runs a blocking call (closing a session) in the cells' thread pool.
Blocking = Callable[[Callable[[], None]], Awaitable[None]]

# How often the heartbeat task looks at the deadline, cancellation and worker shutdown.
WATCH_EVERY_S = 0.25


def deadline_error(when: str) -> ApplicationError:
    return expected(
        f"the run's deadline passed {when}; the node ends timed_out (rlm resume RUN --deadline S "
        "gives it more time)",
        type=DEADLINE_PASSED,
    )


class Guard:
    """A running cell's session and sub-call wait. ``stop`` is final; once ``keep`` has said the
    session goes to the cache for the next cell, ``stop`` leaves it there."""

    def __init__(
        self, deadline_epoch_s: float, blocking: Callable[[Callable[[], None]], Awaitable[None]]
    ) -> None:
        self.deadline_epoch_s = deadline_epoch_s
        self.reason: str | None = None
        self._blocking = blocking
        self._session: sandbox.SandboxSession | None = None
        self._calls: set[asyncio.Future[Any]] = set()
        self._done = False
        self._kept = False

    def expired(self) -> bool:
        return time.time() >= self.deadline_epoch_s

    async def watch(self, session: sandbox.SandboxSession) -> None:
        self._session = session
        if self.reason is not None:
            await self._blocking(session.close)

    async def wait(self, call: Coroutine[Any, Any, T]) -> T:
        """Await a sub-call; a stop abandons it and raises ``SandboxClosed`` here."""
        task = asyncio.ensure_future(call)
        self._calls.add(task)
        if self.reason is not None:
            task.cancel()
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self.reason is not None and (current is None or not current.cancelling()):
                raise sandbox.SandboxClosed(f"the cell was stopped: {self.reason}") from None
            raise
        finally:
            self._calls.discard(task)

    async def stop(self, reason: str) -> None:
        """Abandon the cell: cancel the sub-call waited on, close the session (returns once its
        container is gone). A session already kept for the next cell is left to the cache."""
        if self.reason is None:
            self.reason = reason
        if self._kept:
            return
        log.warning("cell.stopped", reason=reason, finished=self._done)
        for call in list(self._calls):
            call.cancel()
        if self._session is not None:
            await self._blocking(self._session.close)

    def finish(self) -> None:
        self._done = True

    def keep(self) -> bool:
        """True (and final) unless the cell was stopped: the caller caches the session."""
        if self.reason is not None:
            return False
        self._kept = True
        return True


async def watch(guard: Guard) -> None:
    """Heartbeat while the cell runs; stop it at the deadline, on cancellation or worker shutdown."""
    every = beat_every_s(HEARTBEAT_EVERY_S)
    next_beat = time.monotonic() + every
    while True:
        await asyncio.sleep(WATCH_EVERY_S)
        if guard.expired():
            await guard.stop("the run's deadline passed")
            return
        if activity.is_cancelled():
            await guard.stop("the activity was cancelled")
            return
        if activity.is_worker_shutdown():
            await guard.stop("the worker is shutting down")
            return
        if time.monotonic() >= next_beat:
            try:
                activity.heartbeat()
            except Exception as exc:
                # A missed beat is not a reason to stop watching: the deadline and cancellations still count.
                log.warning("cell.heartbeat_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            next_beat = time.monotonic() + every
