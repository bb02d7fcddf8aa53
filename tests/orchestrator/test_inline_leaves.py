"""``leaf_mode="inline"``: llm_query sub-calls as local activities of their parent, no Leaf workflows.

Real dev server, Docker sandbox, PostgreSQL store and litellm, as the rest of tests/orchestrator."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

import sandbox
from orchestrator import control
from orchestrator.control import ControlError, Target
from orchestrator.store import get_run, list_nodes, set_run_budget
from orchestrator.vocabulary import AUTO_INLINE_FROM, LeafMode
from orchestrator.workflow_runner import workflow_runner
from orchestrator.workflows import WORKFLOWS, RLMNode
from orchestrator.workflows.common import SA_STATUS
from orchestrator.workflows.types import Limits
from tests.conftest import LEAF_MECHANISMS
from tests.ops.control.billing import assert_billed_once
from tests.ops.control.helpers import eventually
from tests.orchestrator.harness import Harness, word_context

INLINE = Limits(leaf_mode=LeafMode.INLINE, heartbeat_timeout_s=10)
# A leaf's worst case at this price is several dollars: a small run budget refuses every leaf.
DEAR_LEAF = "scripted/leaf?price_in=1000&price_out=1000"


async def _replays(handle: WorkflowHandle[Any, Any]) -> None:
    history = await handle.fetch_history()
    await Replayer(workflows=WORKFLOWS, workflow_runner=workflow_runner()).replay_workflow(history)


def _leaf_statuses(harness: Harness, run_id: str) -> dict[str, str]:
    with harness.sessions() as s:
        return {n.node_id: n.status for n in list_nodes(s, run_id) if n.kind == "leaf"}


async def test_inline_map_reduce_counts_exactly_and_starts_no_leaf_workflow(
    harness: Harness, tmp_path: Path
) -> None:
    path, expected = word_context(tmp_path / "w.txt", 20_000)

    out = await harness.run(
        "How many times does the word 'ERROR' appear? Use 30 chunks.",
        path,
        model="scripted/mapreduce",
        limits=INLINE,
    )

    assert out.result.status == "completed", out.result.error
    assert out.summary.answer == str(expected)
    leaves = [r for r in out.tree if r.kind == "leaf"]
    assert sorted(r.node_id.rsplit("/", 1)[1] for r in leaves) == sorted(f"0.{i}" for i in range(1, 31))
    assert all(r.status == "completed" for r in leaves)
    assert sum(int(r.answer_preview or "0") for r in leaves) == expected
    # The sub-calls ran inside the root: Temporal has no workflow under a leaf's id.
    for row in leaves[:3]:
        with pytest.raises(RPCError) as err:
            await harness.client.get_workflow_handle(row.node_id).describe()
        assert err.value.status == RPCStatusCode.NOT_FOUND
    assert assert_billed_once(harness.sessions, out.run_id) == out.summary.cost
    await _replays(harness.client.get_workflow_handle(f"{out.run_id}/0"))


async def test_by_default_a_wide_batch_runs_inline_and_a_narrow_one_as_leaf_workflows(
    harness: Harness, tmp_path: Path
) -> None:
    path, expected = word_context(tmp_path / "w.txt", 20_000)
    assert Limits().leaf_mode == LeafMode.AUTO

    for chunks, workflows in ((AUTO_INLINE_FROM, False), (AUTO_INLINE_FROM - 1, True)):
        out = await harness.run(
            f"How many times does the word 'ERROR' appear? Use {chunks} chunks.",
            path,
            model="scripted/mapreduce",
            limits=Limits(heartbeat_timeout_s=10),
        )

        assert out.result.status == "completed", out.result.error
        assert out.summary.answer == str(expected)
        leaves = [r for r in out.tree if r.kind == "leaf"]
        assert len(leaves) == chunks and all(r.status == "completed" for r in leaves)
        wanted = {f"{out.run_id}/0"} | ({r.node_id for r in leaves} if workflows else set())

        async def listed(run_id: str = out.run_id, count: int = len(wanted)) -> set[str] | None:
            ids = {w.id async for w in harness.client.list_workflows(f'RlmRunId = "{run_id}"')}
            return ids if len(ids) >= count else None

        assert await eventually(listed, f"{len(wanted)} workflows of the run listed") == wanted
        assert assert_billed_once(harness.sessions, out.run_id) == out.summary.cost
        if not workflows:  # an inline leaf has no workflow to resume: its parent is named instead
            with pytest.raises(ControlError) as refused:
                await control.resume(harness.client, harness.sessions, Target(out.run_id, leaves[0].node_id))
            assert f"resume its parent {out.run_id}/0 " in str(refused.value)


async def test_inline_leaves_refused_by_the_budget_hold_the_node_until_resume(
    harness: Harness, tmp_path: Path
) -> None:
    path, expected = word_context(tmp_path / "w.txt", 1_500)
    handle = await harness.start(
        "How many times does the word 'ERROR' appear? Use 3 chunks.",
        path,
        model="scripted/mapreduce",
        sub_model=DEAR_LEAF,
        budget_usd="0.5",
        limits=INLINE,
    )
    run_id = handle.id.rsplit("/", 1)[0]

    async def all_held() -> bool | None:
        statuses = _leaf_statuses(harness, run_id)
        return True if len(statuses) == 3 and set(statuses.values()) == {"paused_budget"} else None

    await eventually(all_held, "three leaves held for budget")
    state = await handle.query(RLMNode.state)
    assert state.status == "paused_budget" and "budget" in (state.message or "")

    async def attribute_paused() -> bool | None:
        desc = await handle.describe()
        return True if desc.typed_search_attributes.get(SA_STATUS) == "paused_budget" else None

    await eventually(attribute_paused, "RlmStatus paused_budget on the root")

    with harness.sessions.begin() as s:
        set_run_budget(s, run_id, Decimal("100"))
    await handle.signal(RLMNode.resume)
    out = await asyncio.wait_for(harness.finish(handle), 120)

    assert out.result.status == "completed", out.result.error
    assert out.summary.answer == str(expected)
    assert set(_leaf_statuses(harness, run_id).values()) == {"completed"}
    spent = assert_billed_once(harness.sessions, run_id)
    with harness.sessions() as s:
        run = get_run(s, run_id)
        assert (run.reserved, run.spent) == (Decimal(0), spent)
    await _replays(handle)


async def test_inline_leaves_in_flight_are_aborted_with_their_node(harness: Harness, tmp_path: Path) -> None:
    path, _ = word_context(tmp_path / "w.txt", 1_500)
    handle = await harness.start(
        "How many times does the word 'ERROR' appear? Use 4 chunks.",
        path,
        model="scripted/mapreduce",
        sub_model="scripted/leaf?latency_ms=20000",
        limits=INLINE,
    )
    run_id = handle.id.rsplit("/", 1)[0]

    async def in_flight() -> bool | None:
        statuses = _leaf_statuses(harness, run_id)
        return True if len(statuses) == 4 and set(statuses.values()) == {"running"} else None

    await eventually(in_flight, "four inline leaves in flight")
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), 60)

    assert set(_leaf_statuses(harness, run_id).values()) == {"aborted"}

    async def released() -> bool | None:
        with harness.sessions() as s:
            run = get_run(s, run_id)
        return True if run.reserved == 0 else None

    # The abandoned calls' reservations go back to the budget; nothing was charged for them.
    await eventually(released, "the leaves' reservations released")
    assert assert_billed_once(harness.sessions, run_id) > 0
    sandbox.reap(labels={"run": run_id})


@pytest.mark.parametrize("leaf_mode", LEAF_MECHANISMS)
async def test_leaves_held_for_budget_until_the_deadline_end_timed_out(
    harness: Harness, tmp_path: Path, leaf_mode: str
) -> None:
    path, _ = word_context(tmp_path / "w.txt", 1_000)
    out = await asyncio.wait_for(
        harness.run(
            "How many times does the word 'ERROR' appear? Use 2 chunks.",
            path,
            model="scripted/mapreduce",
            sub_model=DEAR_LEAF,
            budget_usd="0.5",
            deadline_s=8.0,
            limits=Limits(leaf_mode=leaf_mode, heartbeat_timeout_s=5),
        ),
        90,
    )

    assert out.result.status == "timed_out", out.result.error
    statuses = _leaf_statuses(harness, out.run_id)
    assert statuses == {f"{out.run_id}/0.1": "timed_out", f"{out.run_id}/0.2": "timed_out"}
    with harness.sessions() as s:
        assert get_run(s, out.run_id).reserved == 0
