"""Resume from any node: ``rlm resume`` restarts a terminated node from its last completed iteration;
``temporal workflow reset`` of one node to an earlier workflow task completes; nothing is paid twice."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from temporalio.api.enums.v1 import EventType

from orchestrator.runs import run_summary
from orchestrator.store import list_nodes
from orchestrator.workflows.types import Limits, NodeResult
from tests.ops.control.billing import assert_billed_once, settled_calls
from tests.ops.control.helpers import eventually, replay_all, rlm_json
from tests.orchestrator.harness import Harness, word_context

TEMPORAL = str(Path(sys.executable).parent / "temporal")


def _leaves_done(harness: Harness, run_id: str) -> int:
    with harness.sessions() as s:
        return sum(1 for n in list_nodes(s, run_id) if n.kind == "leaf" and n.status == "completed")


async def test_resume_of_a_terminated_node_finishes_without_paying_twice(
    harness: Harness, rlm_env: dict[str, str], tmp_path: Path
) -> None:
    path, expected = word_context(tmp_path / "w.txt", 3_000)
    handle = await harness.start(
        "How many times does the word 'ERROR' appear? Use 6 chunks.",
        path,
        model="scripted/mapreduce?parallel=0",  # one llm_query after the other
        sub_model="scripted/leaf?latency_ms=500",
    )
    run_id = handle.id.rsplit("/", 1)[0]

    async def some_done() -> bool | None:
        return True if _leaves_done(harness, run_id) >= 2 else None

    await eventually(some_done, "two finished sub-calls")
    await handle.terminate("test: the node dies mid-cell")
    done_before = _leaves_done(harness, run_id)
    assert 2 <= done_before < 6

    report = await rlm_json(rlm_env, "resume", run_id)
    assert report == {"target": run_id, "signalled": [], "restarted": handle.id}
    latest = harness.client.get_workflow_handle(handle.id, result_type=NodeResult)
    result = await asyncio.wait_for(latest.result(), 90)

    assert result.status == "completed" and result.answer is not None
    summary = run_summary(harness.sessions, run_id)
    assert summary.status == "completed" and summary.answer == str(expected)
    with harness.sessions() as s:
        leaves = sorted(n.node_id for n in list_nodes(s, run_id) if n.kind == "leaf")
    # The re-run cell re-asked the same sub-calls under the same child ids: no seventh child.
    assert leaves == [f"{handle.id}.{i}" for i in range(1, 7)]
    assert_billed_once(harness.sessions, run_id)
    assert await replay_all(harness.client, [handle.id, *leaves]) == {}


async def _reset(address: str, workflow_id: str, *how: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        TEMPORAL,
        "workflow",
        "reset",
        "--address",
        address,
        "--workflow-id",
        workflow_id,
        "--reason",
        "test",
        *how,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, (out + err).decode()


async def test_reset_of_a_node_to_an_earlier_workflow_task_completes_without_billing_twice(
    harness: Harness, tmp_path: Path
) -> None:
    path, expected = word_context(tmp_path / "w.txt", 2_000)
    out = await harness.run(
        "How many times does the word 'ERROR' appear? Use 3 chunks.",
        path,
        model="scripted/mapreduce",
        limits=Limits(heartbeat_timeout_s=10),
    )
    assert out.summary.answer == str(expected)
    root = f"{out.run_id}/0"
    calls = settled_calls(harness.sessions, out.run_id)
    address = harness.settings.temporal_address or ""

    # 1. Back to the first workflow task: every step is found recorded.
    await _reset(address, root, "--type", "FirstWorkflowTask")
    latest = harness.client.get_workflow_handle(root, result_type=NodeResult)
    again = await asyncio.wait_for(latest.result(), 60)
    assert again.status == "completed"

    # 2. Back to the workflow task that scheduled the cell, whose sub-calls had all completed.
    history = await latest.fetch_history()
    events = list(history.events)
    scheduled = next(
        i
        for i, e in enumerate(events)
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "execute"
    )
    task_done = next(
        e.event_id
        for e in reversed(events[:scheduled])
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    )
    await _reset(address, root, "--event-id", str(task_done))
    third = await asyncio.wait_for(latest.result(), 60)
    assert third.status == "completed"

    summary = run_summary(harness.sessions, out.run_id)
    assert summary.status == "completed" and summary.answer == str(expected)
    assert settled_calls(harness.sessions, out.run_id) == calls  # nothing billed again
    assert_billed_once(harness.sessions, out.run_id)
    assert await replay_all(harness.client, [r.node_id for r in out.tree]) == {}
