"""``rlm abort`` of a run whose workflows were ended outside the engine (``temporal workflow
terminate``, a lost server history) brings the store to the end Temporal already reached: every node
the store still shows running is recorded ``aborted``, the run too, and what they held goes back to the
budgets. Before, such a run stayed ``running`` in the store for good and ``rlm wait`` never returned.

Real dev server, store, Docker sandbox and an in-process worker; the model is scripted."""

from __future__ import annotations

from pathlib import Path

from orchestrator.control import abort, parse_target
from orchestrator.store import get_run, list_nodes
from orchestrator.vocabulary import FINAL_STATUSES, Status
from orchestrator.workflows import RLMNode
from tests.ops.control.helpers import eventually
from tests.orchestrator.harness import Harness, word_context


async def test_abort_of_a_terminated_run_records_its_end_and_releases_its_holds(
    harness: Harness, tmp_path: Path
) -> None:
    path, _ = word_context(tmp_path / "w.txt", 2_000)
    handle = await harness.start(
        "How many times does the word 'ERROR' appear? Use 4 chunks.",
        path,
        model="scripted/mapreduce",
        sub_model="scripted/leaf?latency_ms=3000",
    )
    run_id = handle.id.rsplit("/", 1)[0]

    async def leaves_started() -> bool | None:
        state = await handle.query(RLMNode.state)
        return True if state.children >= 4 else None

    await eventually(leaves_started, "the root's leaves", timeout_s=60)
    await handle.terminate("test: ended outside the engine")
    with harness.sessions() as s:
        assert get_run(s, run_id).status == Status.RUNNING  # nothing recorded the termination

    report = await abort(harness.client, harness.sessions, parse_target(run_id), wait_s=30)

    assert report.still_running == []
    assert handle.id in report.settled and handle.id not in report.cancelled  # it had closed already
    with harness.sessions() as s:
        run = get_run(s, run_id)
        nodes = {n.node_id: n.status for n in list_nodes(s, run_id)}
        assert run.status == Status.ABORTED and run.reserved_nanos == 0
        assert all(status in FINAL_STATUSES for status in nodes.values()), nodes
        assert nodes[handle.id] == Status.ABORTED
