"""However a node ends, its sandbox containers end with it; the run's deadline ends a blocked cell.

Trees of a root and two ``rlm_query`` children, each running cells (policy ``code``: the query is the
cell), run to completion, to failure and past the deadline; afterwards no container carries the
run's label. Real dev server, Docker engine, PostgreSQL store and litellm.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import astuple
from datetime import UTC
from decimal import Decimal
from pathlib import Path

import docker
import pytest
from temporalio.api.enums.v1 import EventType

from orchestrator.store import create_tenant, ledger_sums, list_nodes, list_steps, run_usage, tenant_usage
from orchestrator.vocabulary import LeafMode
from orchestrator.workflows.types import Limits
from sandbox.docker_backend import containers
from tests.conftest import LEAF_MECHANISMS
from tests.orchestrator.harness import Harness, word_context

# Each child's context (and query) is the prompt: a one-line program for the child's first cell.
COMPLETES = "r = rlm_query_batched(['FINAL(1)', 'FINAL(2)'])\nprint(r)\nFINAL('+'.join(r))"
# Each cell prints enough that the next model call no longer fits in the model's context window: every
# node ends failed after running one cell.
LONG = 'print("y" * 6000)'
FAILS = f"r = rlm_query_batched([{LONG!r}, {LONG!r}])\n{LONG}"
FAILING_MODEL = "scripted/code?context_window=1500"
# Every cell of the tree blocks; only the run's deadline ends them.
SLEEP = "import time; time.sleep(10**6)"
BLOCKS = f"r = rlm_query_batched([{SLEEP!r}, {SLEEP!r}])\n{SLEEP}"


def _containers(run_id: str) -> list[str]:
    engine = docker.from_env()
    try:
        return [c.name or "" for c in containers(engine, {"run": run_id})]
    finally:
        engine.close()


def _statuses(harness: Harness, run_id: str) -> dict[str, str]:
    with harness.sessions() as s:
        return {n.node_id.rsplit("/", 1)[1]: n.status for n in list_nodes(s, run_id)}


async def test_a_completed_tree_leaves_no_container(harness: Harness, tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("unused")

    out = await asyncio.wait_for(
        harness.run(COMPLETES, path, model="scripted/code", sub_model="scripted/code"), 120
    )

    assert out.result.status == "completed", out.result.error
    assert out.summary.answer == "1+2"
    assert _statuses(harness, out.run_id) == {"0": "completed", "0.1": "completed", "0.2": "completed"}
    assert _containers(out.run_id) == []


async def test_a_failed_tree_leaves_no_container(harness: Harness, tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("unused")

    out = await asyncio.wait_for(harness.run(FAILS, path, model=FAILING_MODEL, sub_model=FAILING_MODEL), 120)

    assert out.result.status == "failed"
    assert "context" in (out.result.error or "")
    assert _statuses(harness, out.run_id) == {"0": "failed", "0.1": "failed", "0.2": "failed"}
    with harness.sessions() as s:
        # Each node ran its cell before its model call failed: each had a container to remove.
        for node in list_nodes(s, out.run_id):
            assert [st.kind for st in list_steps(s, node.node_id)] == ["generate", "cell"], node.node_id
    assert _containers(out.run_id) == []


async def test_the_deadline_ends_blocked_cells_timed_out_with_no_retry_and_no_container(
    harness: Harness, tmp_path: Path
) -> None:
    path = tmp_path / "c.txt"
    path.write_text("unused")
    deadline_s = 15.0
    handle = await harness.start(
        BLOCKS,
        path,
        model="scripted/code",
        sub_model="scripted/code",
        deadline_s=deadline_s,
        limits=Limits(heartbeat_timeout_s=5),
    )
    run_id = handle.id.rsplit("/", 1)[0]
    deadline = (await handle.describe()).start_time.timestamp() + deadline_s
    created: dict[str, float] = {}
    engine = docker.from_env()

    def look() -> None:
        # When each container of the run is first seen: a pooled one was created long before its cell.
        for c in containers(engine, {"run": run_id}):
            created.setdefault(c.id or "", time.time())

    async def watch_containers() -> None:
        while True:
            await asyncio.to_thread(look)
            await asyncio.sleep(0.3)

    watcher = asyncio.create_task(watch_containers())
    try:
        out = await asyncio.wait_for(harness.finish(handle), deadline_s + 25)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        engine.close()
    ended = time.time()

    assert out.result.status == "timed_out", out.result.error
    assert ended < deadline + 20
    assert _statuses(harness, run_id) == {"0": "timed_out", "0.1": "timed_out", "0.2": "timed_out"}
    assert _containers(run_id) == []
    # Three sandboxes were seen, all before the deadline: no cell attempt began after it.
    assert len(created) == 3 and max(created.values()) < deadline
    for node in ("0", "0.1", "0.2"):
        history = await harness.client.get_workflow_handle(f"{run_id}/{node}").fetch_history()
        starts = [
            e
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
            and history.events[
                e.activity_task_started_event_attributes.scheduled_event_id - 1
            ].activity_task_scheduled_event_attributes.activity_type.name
            == "execute"
        ]
        assert [e.activity_task_started_event_attributes.attempt for e in starts] == [1], node
        assert starts[0].event_time.ToDatetime(UTC).timestamp() < deadline


@pytest.mark.parametrize("leaf_mode", LEAF_MECHANISMS)
async def test_the_deadline_ends_leaves_on_a_slow_model_soon_and_their_holds_go_back(
    harness: Harness, tmp_path: Path, leaf_mode: LeafMode
) -> None:
    # The leaves' model answers after the deadline: their calls time out, and a retry could only start
    # after it. The run used to end ~20 s late, its leaves' reservations held for good.
    path, _ = word_context(tmp_path / "w.txt", 400)
    tenant = f"holds-{leaf_mode}"
    with harness.sessions.begin() as s:
        create_tenant(s, tenant, Decimal(10))
    deadline_s = 4.0
    handle = await harness.start(
        "How many times does the word 'ERROR' appear? Use 2 chunks.",
        path,
        model="scripted/mapreduce",
        sub_model="scripted/leaf?latency_ms=8000",
        deadline_s=deadline_s,
        tenant=tenant,
        limits=Limits(heartbeat_timeout_s=10, leaf_mode=leaf_mode),
    )
    run_id = handle.id.rsplit("/", 1)[0]
    deadline = (await handle.describe()).start_time.timestamp() + deadline_s
    out = await asyncio.wait_for(harness.finish(handle), 60)
    ended = time.time()

    assert out.result.status == "timed_out", out.result.error
    assert _statuses(harness, run_id) == {"0": "timed_out", "0.1": "timed_out", "0.2": "timed_out"}
    assert ended < deadline + 5, ended - deadline
    with harness.sessions() as s:
        assert run_usage(s, run_id).reserved == 0
        usage = tenant_usage(s, tenant)
        assert usage.reserved == 0 and usage.spent == out.summary.cost
        assert (usage.spent, usage.reserved) == astuple(ledger_sums(s, tenant=tenant))
