"""``beating``: an activity that waits on something slow tells Temporal it is alive while it waits.

Without beats Temporal notices a worker that died (SIGKILL, a lost machine) only at the activity's
start-to-close timeout, ten minutes for a model call, and its cancel (the Web UI's *Request
Cancellation*, ``temporal workflow cancel``, a parent that ends) never reaches the activity. With them
the attempt is retried elsewhere at the heartbeat timeout and a cancel is delivered at the next beat
the SDK sends (it sends at most one every 0.8 heartbeat timeouts).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from temporalio import activity

log = structlog.get_logger(__name__)

HEARTBEAT_EVERY_S = 2.0


def beat_every_s(longest: float) -> float:
    """``longest``, or a third of the activity's heartbeat timeout when that is shorter: no timeout
    (``RLM_HEARTBEAT_TIMEOUT_S`` may be as short as 1 s) may pass between two beats."""
    timeout = activity.info().heartbeat_timeout
    if not timeout:
        return longest
    return min(longest, timeout.total_seconds() / 3)


@contextlib.asynccontextmanager
async def beating() -> AsyncIterator[None]:
    """Heartbeat while the body runs, from the activity's own context. The first beat comes one interval
    in: a call shorter than that costs Temporal nothing."""
    task = asyncio.create_task(_beat(beat_every_s(HEARTBEAT_EVERY_S)), name="activity-heartbeat")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _beat(every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            activity.heartbeat()
        except Exception as exc:
            # A missed beat costs at worst a retry at the heartbeat timeout; the call itself goes on.
            log.warning("activity.heartbeat_failed", error=f"{type(exc).__name__}: {exc}"[:300])
