"""Search attributes, memo and the ``state`` query during and after a run (visibility is eventually
consistent on the dev server: every read polls with a bounded wait)."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import WorkflowExecution

from orchestrator.runs import run_summary
from orchestrator.workflows import RLMNode
from orchestrator.workflows.common import SA_COST, SA_DEPTH, SA_RUN_ID, SA_TENANT
from orchestrator.workflows.types import Limits, NodeState
from tests.ops.control.helpers import eventually, replay_all
from tests.orchestrator.harness import Harness, word_context

QUERY = "How many times does the word 'ERROR' appear? Use 4 chunks.\nCount carefully."


async def _listed(harness: Harness, query: str, count: int) -> list[WorkflowExecution] | None:
    found = [w async for w in harness.client.list_workflows(query)]
    return found if len(found) >= count else None


async def test_attributes_memo_and_state_during_and_after_a_run(harness: Harness, tmp_path: Path) -> None:
    path, expected = word_context(tmp_path / "w.txt", 2_000)
    handle = await harness.start(
        QUERY,
        path,
        model="scripted/mapreduce",
        sub_model="scripted/leaf?latency_ms=1500",
        limits=Limits(max_concurrency=4, heartbeat_timeout_s=10),
    )
    run_id = handle.id.rsplit("/", 1)[0]

    # During: the root's live state shows the cell waiting on its four children.
    async def waiting() -> NodeState | None:
        state = await handle.query(RLMNode.state)
        return state if len(state.child_states) == 4 else None

    live = await eventually(waiting, "the root to start 4 children")
    assert live.status == "running" and live.iteration == 1 and live.step == "cell 1.0"
    assert live.children == 4
    assert {c.status for c in live.child_states} == {"running"}
    assert live.cost_usd != "0"  # the root's first model call is paid

    running = await eventually(
        lambda: _listed(harness, f'RlmRunId = "{run_id}" AND RlmStatus = "running" AND RlmDepth = 1', 4),
        "4 running children in visibility",
    )
    for wf in running:
        sa = wf.typed_search_attributes
        assert sa.get(SA_TENANT) == "default" and sa.get(SA_RUN_ID) == run_id
        memo = await wf.memo()
        # The prompt's first line (its instruction), not the chunk of context after it.
        assert str(memo["query"]).startswith("Count the matches of the regex /")
        assert str(memo["query"]).endswith("Reply with the number only.")

    out = await harness.finish(handle)
    assert out.summary.answer == str(expected)

    # After: every node shows completed; the root's cost is the whole tree's spend.
    done = await eventually(
        lambda: _listed(harness, f'RlmRunId = "{run_id}" AND RlmStatus = "completed"', 5),
        "5 completed nodes in visibility",
    )
    root = next(w for w in done if w.id == handle.id)
    assert root.typed_search_attributes.get(SA_DEPTH) == 0
    spent = run_summary(harness.sessions, run_id).cost
    assert abs((root.typed_search_attributes.get(SA_COST) or 0) - float(spent)) < 1e-9
    assert await root.memo() == {"query": "How many times does the word 'ERROR' appear? Use 4 chunks."}

    final = await handle.query(RLMNode.state)
    assert final.status == "completed" and final.step == "done"
    assert [c.status for c in final.child_states] == ["completed"] * 4
    leaf_costs = sum(float(c.cost_usd) for c in final.child_states)
    assert abs(float(final.children_cost_usd) - leaf_costs) < 1e-12
    assert await replay_all(harness.client, [w.id for w in done]) == {}


async def test_rlm_cost_follows_finished_sub_calls_during_a_long_cell(
    harness: Harness, tmp_path: Path
) -> None:
    path, expected = word_context(tmp_path / "w.txt", 3_000)
    handle = await harness.start(
        "How many times does the word 'ERROR' appear? Use 12 chunks.",
        path,
        model="scripted/mapreduce",
        sub_model="scripted/leaf?latency_ms=1500",
        limits=Limits(max_concurrency=2, heartbeat_timeout_s=10),
    )

    async def cost_beyond_own_while_in_the_cell() -> float | None:
        state = await handle.query(RLMNode.state)
        shown = (await handle.describe()).typed_search_attributes.get(SA_COST) or 0.0
        in_cell = state.step == "cell 1.0" and any(c.status == "running" for c in state.child_states)
        return shown if in_cell and shown > float(state.cost_usd) else None

    # 12 leaves two at a time take ~9 s: the root shows its finished leaves' spend before the cell ends.
    await eventually(cost_beyond_own_while_in_the_cell, "RlmCost to include finished leaves mid-cell", 30)
    out = await harness.finish(handle)
    assert out.summary.answer == str(expected)
