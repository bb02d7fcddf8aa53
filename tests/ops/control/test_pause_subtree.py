"""A pause reaches the whole subtree: a node passes ``pause``/``resume``/``abort`` on to its running RLM
children, and a node whose pause is requested starts no child (the cell's sub-call waits). Real dev
server, store, Docker sandboxes; only the root is signalled, so everything below it is reached by the
workflows themselves."""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.client import Client, WorkflowHandle

from orchestrator.ids import quoted
from orchestrator.workflows import RLMNode
from orchestrator.workflows.common import SA_STATUS
from orchestrator.workflows.types import Limits, NodeResult, NodeState
from tests.ops.control.helpers import eventually, node_status, replay_all, rlm_json, wait_status
from tests.orchestrator.harness import Harness, word_context

# Root and children split in halves with one rlm_query at a time; every child model call takes 1.5 s,
# so a depth-1 node is in the middle of its cell (waiting on its first child) for a while.
ROOT_MODEL = "scripted/recurse?parallel=0"
CHILD_MODEL = "scripted/recurse?parallel=0&latency_ms=1500"
QUERY = "How many times does the word 'ERROR' appear?"


async def _start(
    harness: Harness, tmp_path: Path, deadline_s: float = 300.0
) -> tuple[WorkflowHandle[RLMNode, NodeResult], int]:
    path, expected = word_context(tmp_path / "w.txt", 4_000)
    handle = await harness.start(
        QUERY,
        path,
        model=ROOT_MODEL,
        sub_model=CHILD_MODEL,
        limits=Limits(max_depth=2, heartbeat_timeout_s=10),
        deadline_s=deadline_s,
    )
    return handle, expected


async def _state(client: Client, node_id: str) -> NodeState:
    return await client.get_workflow_handle(node_id).query(RLMNode.state)


async def _pause_while_grandchild_generates(harness: Harness, root: str) -> None:
    """Signal ``pause`` to the root alone once ``0.1.1`` is past its first checkpoint (in its model
    call): it finishes, and ``0.1``'s next sub-call is asked for while ``0.1`` must hold."""

    async def generating() -> bool | None:
        if node_status(harness.sessions, f"{root}.1.1") is None:
            return None
        state = await _state(harness.client, f"{root}.1.1")
        return True if state.step.startswith("generate") else None

    await eventually(generating, "the first grandchild's model call")
    await harness.client.get_workflow_handle(root).signal(RLMNode.pause)


async def _held(client: Client, node_id: str) -> NodeState:
    async def probe() -> NodeState | None:
        state = await _state(client, node_id)
        return state if state.held_subcalls == 1 else None

    return await eventually(probe, f"{node_id} holding a sub-call")


async def _run_ids(client: Client, run_id: str) -> list[str]:
    return sorted([w.id async for w in client.list_workflows(f"RlmRunId = {quoted(run_id)}")])


async def test_pause_reaches_children_and_holds_new_sub_calls_then_resume_completes(
    harness: Harness, rlm_env: dict[str, str], tmp_path: Path
) -> None:
    handle, expected = await _start(harness, tmp_path)
    root = handle.id
    run_id = root.rsplit("/", 1)[0]
    await _pause_while_grandchild_generates(harness, root)

    # 0.1 got the pause from its parent only; its cell asked for 0.1.2, which is not started.
    state = await _held(harness.client, f"{root}.1")
    assert state.status == "paused" and state.step == "cell 1.0"
    assert state.message is not None and "new sub-calls wait for `rlm resume`" in state.message
    await wait_status(harness.sessions, f"{root}.1", "paused")
    desc = await harness.client.get_workflow_handle(f"{root}.1").describe()
    assert desc.typed_search_attributes.get(SA_STATUS) == "paused"
    await wait_status(harness.sessions, f"{root}.1.1", "completed")  # was past its checkpoint

    started = {root, f"{root}.1", f"{root}.1.1"}

    async def all_visible() -> bool | None:
        return True if set(await _run_ids(harness.client, run_id)) == started else None

    await eventually(all_visible, "the three started nodes in visibility")
    await asyncio.sleep(3.0)  # held: nothing new starts meanwhile
    assert set(await _run_ids(harness.client, run_id)) == started
    assert node_status(harness.sessions, f"{root}.1.2") is None
    assert (await _state(harness.client, f"{root}.1")).held_subcalls == 1
    assert (await handle.query(RLMNode.state)).status == "running"  # mid-cell, waiting on 0.1

    # The operator's resume signals every running node; the parents pass it on too (duplicates).
    resumed = await rlm_json(rlm_env, "resume", run_id)
    assert resumed["signalled"] == [root, f"{root}.1"]
    out = await asyncio.wait_for(harness.finish(handle), 120)
    assert out.result.status == "completed" and out.summary.answer == str(expected)
    assert {r.node_id for r in out.tree} == started | {
        f"{root}.1.2",
        f"{root}.2",
        f"{root}.2.1",
        f"{root}.2.2",
    }
    assert all(r.status == "completed" for r in out.tree)
    assert await replay_all(harness.client, [r.node_id for r in out.tree]) == {}


async def test_abort_while_held_ends_the_sub_call_unstarted_and_the_subtree_aborted(
    harness: Harness, tmp_path: Path
) -> None:
    handle, _ = await _start(harness, tmp_path)
    root = handle.id
    await _pause_while_grandchild_generates(harness, root)
    await _held(harness.client, f"{root}.1")

    await handle.signal(RLMNode.abort)  # passed on to 0.1, whose held sub-call ends unstarted
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.status == "aborted"
    child = await harness.client.get_workflow_handle(f"{root}.1", result_type=NodeResult).result()
    assert child.status == "aborted"
    state = await _state(harness.client, f"{root}.1")
    assert state.last_error is not None
    assert f"sub-call {root}.1.2 was not started: the node was aborted while paused" in state.last_error
    assert node_status(harness.sessions, f"{root}.1.2") is None
    assert node_status(harness.sessions, f"{root}.1") == "aborted"
    assert node_status(harness.sessions, root) == "aborted"
    ids = [root, f"{root}.1", f"{root}.1.1"]
    assert await replay_all(harness.client, ids) == {}


async def test_a_node_paused_until_the_deadline_ends_timed_out(harness: Harness, tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("z" * 99)
    handle = await harness.start(
        "What is the magic number?", path, model="scripted/loop?latency_ms=300", deadline_s=8.0
    )
    await handle.signal(RLMNode.pause)
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.status == "timed_out"
    assert result.error == "paused by an operator until the deadline: paused by an operator (rlm pause)"
    assert await replay_all(harness.client, [handle.id]) == {}
