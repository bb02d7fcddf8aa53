"""The heartbeat task of a running cell: a heartbeat call that fails does not end it, and it still stops
the cell (closes its session, abandons the sub-call it waits on) at the run's deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

import sandbox
from orchestrator.activities import cell_watch
from orchestrator.activities.cell_watch import Guard, watch


class _Session:
    """Stands in for a sandbox session: only ``close`` is called by the guard."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


async def _inline(fn: Callable[[], None]) -> None:
    fn()


async def test_a_failing_heartbeat_does_not_stop_the_watch_and_the_deadline_still_stops_the_cell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cell_watch, "HEARTBEAT_EVERY_S", 0.05)
    monkeypatch.setattr(cell_watch, "WATCH_EVERY_S", 0.02)
    beats: list[int] = []

    def failing_heartbeat(*details: Any) -> None:
        beats.append(1)
        raise TimeoutError("the heartbeat could not be sent within 10 s")

    env = ActivityEnvironment()
    env.on_heartbeat = failing_heartbeat
    guard = Guard(time.time() + 1.0, _inline)
    session = _Session()

    async def cell() -> str:
        await guard.watch(session)  # type: ignore[arg-type]
        watcher = asyncio.create_task(watch(guard))
        try:
            # A sub-call that is never answered: only the deadline ends the wait.
            await guard.wait(asyncio.Event().wait())
            return "answered"
        except sandbox.SandboxClosed as exc:
            return str(exc)
        finally:
            await asyncio.wait_for(watcher, 5)

    outcome = await asyncio.wait_for(env.run(cell), 10)  # a dead watcher would leave the wait hanging
    assert outcome == "the cell was stopped: the run's deadline passed"
    assert session.closed
    assert len(beats) >= 3  # it went on beating after the first failure
    assert not guard.keep()  # a stopped cell's session is not cached


async def test_a_session_kept_for_the_next_cell_is_not_closed_by_a_late_stop() -> None:
    guard = Guard(time.time() + 60, _inline)
    session = _Session()
    await guard.watch(session)  # type: ignore[arg-type]
    assert guard.keep()
    await guard.stop("the node ended")
    assert not session.closed
