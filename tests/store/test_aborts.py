"""Abort requests on both backends, and the worker's ``AbortWatch`` that stops model calls under them."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.orm import Session, sessionmaker
from structlog.testing import capture_logs

from orchestrator.activities.abort_watch import AbortWatch, CallAborted
from orchestrator.store import abort_requests, clear_abort_requests, request_abort, upsert_node
from orchestrator.vocabulary import NodeKind
from tests.store.conftest import seed

# The tree: run-1/0 with children 0.1 and 0.2; 0.1 has 0.1.1. run-2/0 is another run's root.
TREE = (
    ("run-1", "run-1/0", None),
    ("run-1", "run-1/0.1", "run-1/0"),
    ("run-1", "run-1/0.2", "run-1/0"),
    ("run-1", "run-1/0.1.1", "run-1/0.1"),
    ("run-2", "run-2/0", None),
)


def _tree(sessions: sessionmaker[Session]) -> None:
    seed(sessions)
    seed(sessions, tenant="other", run_id="run-2")
    with sessions.begin() as s:
        for run_id, node_id, parent in TREE:
            kind = NodeKind.ROOT if parent is None else NodeKind.RLM
            upsert_node(s, node_id, run_id=run_id, kind=kind, depth=node_id.count("."), parent_id=parent)


def test_marks_are_found_per_run_and_a_restart_clears_the_ones_above_and_below(
    sessions: sessionmaker[Session],
) -> None:
    _tree(sessions)
    with sessions.begin() as s:
        assert abort_requests(s, ["run-1", "run-2"]) == []
        assert request_abort(s, "run-1/0.1")
        assert request_abort(s, "run-1/0.2")
        assert request_abort(s, "run-2/0")
        assert not request_abort(s, "run-1/0.9")  # not in the store yet: nothing of it calls a model
        assert abort_requests(s, []) == []
    with sessions() as s:
        assert sorted(abort_requests(s, ["run-1"])) == ["run-1/0.1", "run-1/0.2"]
        assert sorted(abort_requests(s, ["run-1", "run-2"])) == ["run-1/0.1", "run-1/0.2", "run-2/0"]

    with sessions.begin() as s:
        # Restarting 0.1.1: its parent's mark would stop it; the sibling subtree's mark stays.
        assert clear_abort_requests(s, "run-1", "run-1/0.1.1") == ["run-1/0.1"]
    with sessions.begin() as s:
        assert abort_requests(s, ["run-1"]) == ["run-1/0.2"]
        # Restarting the root clears every mark of its run, and only of its run.
        assert clear_abort_requests(s, "run-1", "run-1/0") == ["run-1/0.2"]
    with sessions() as s:
        assert abort_requests(s, ["run-1", "run-2"]) == ["run-2/0"]


async def _slow_call(seconds: float = 60.0) -> str:
    await asyncio.sleep(seconds)
    return "answered"


async def test_the_watch_stops_calls_under_a_mark_and_no_other(sessions: sessionmaker[Session]) -> None:
    _tree(sessions)
    watch = AbortWatch(sessions, every_s=0.05)
    under = asyncio.create_task(watch.call("run-1", "run-1/0.1.1", _slow_call()))
    beside = asyncio.create_task(watch.call("run-1", "run-1/0.2", _slow_call(1.0)))
    other_run = asyncio.create_task(watch.call("run-2", "run-2/0", _slow_call(1.0)))
    await asyncio.sleep(0.2)
    assert not under.done()  # no mark yet
    with sessions.begin() as s:
        request_abort(s, "run-1/0.1")

    with pytest.raises(CallAborted) as caught:
        await asyncio.wait_for(under, 5)
    assert (caught.value.node_id, caught.value.marked) == ("run-1/0.1.1", "run-1/0.1")
    assert "run-1/0.1 was aborted by an operator" in str(caught.value)
    assert await beside == "answered"
    assert await other_run == "answered"
    await watch.close()


async def test_a_cancel_from_outside_stays_a_cancel(sessions: sessionmaker[Session]) -> None:
    """Temporal cancelling the activity (the deadline, a cancel that came first) is not an abort mark."""
    _tree(sessions)
    watch = AbortWatch(sessions, every_s=0.05)
    outer = asyncio.create_task(watch.call("run-1", "run-1/0.1", _slow_call()))
    await asyncio.sleep(0.1)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    await watch.close()


async def test_a_failing_store_costs_one_warning_and_the_call_goes_on() -> None:
    def broken() -> Session:
        raise RuntimeError("the database is down")

    watch = AbortWatch(broken, every_s=0.02)  # type: ignore[arg-type]
    with capture_logs() as logs:
        assert await watch.call("run-1", "run-1/0", _slow_call(0.3)) == "answered"
    await watch.close()
    warnings = [e for e in logs if e["event"] == "abort_watch.store_failed"]
    assert len(warnings) == 1, logs
    assert "the database is down" in warnings[0]["error"]
