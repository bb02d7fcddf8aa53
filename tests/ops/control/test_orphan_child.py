"""A sub-call whose child id is taken by a workflow an earlier run of its node left behind (a node
terminated mid-cell and restarted: its old children are still closing) waits for that workflow to
go, then starts its own child under the same id, instead of failing the cell's Update.

Real dev server, store, Docker sandbox and an in-process worker; the model is scripted. The workflow
in the way is started by the test on a task queue nobody serves, so it runs until the test ends it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus

from orchestrator.store import list_nodes
from tests.ops.control.helpers import eventually, replay_all
from tests.orchestrator.harness import Harness, word_context

QUERY = "How many times does the word 'ERROR' appear? Use 3 chunks."
TIMER = EventType.EVENT_TYPE_TIMER_STARTED


async def test_a_sub_call_waits_for_a_workflow_left_under_its_id_then_starts_its_own(
    harness: Harness, tmp_path: Path
) -> None:
    path, expected = word_context(tmp_path / "w.txt", 2_000)
    run_id = f"t-{uuid.uuid4().hex[:10]}"
    in_the_way = await harness.client.start_workflow(
        "LeftBehind", id=f"{run_id}/0.1", task_queue=f"nobody-{run_id}"
    )
    handle = await harness.start(QUERY, path, model="scripted/mapreduce?parallel=0", run_id=run_id)

    async def waiting() -> int | None:
        timers = [e async for e in handle.fetch_history_events() if e.event_type == TIMER]
        return len(timers) if len(timers) >= 2 else None

    await eventually(waiting, "the node asking again for the taken id", timeout_s=60)
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    await in_the_way.terminate("test: the earlier run's child is gone")

    result = await handle.result()
    assert result.status == "completed" and result.answer is not None
    with harness.sessions() as session:
        nodes = {n.node_id: n.status for n in list_nodes(session, run_id)}
    # The first sub-call got its own child under the id that was taken, and no number was skipped.
    assert nodes == {
        f"{run_id}/0": "completed",
        f"{run_id}/0.1": "completed",
        f"{run_id}/0.2": "completed",
        f"{run_id}/0.3": "completed",
    }
    assert await replay_all(harness.client, [handle.id]) == {}
    assert str(expected) in str(result.answer)
