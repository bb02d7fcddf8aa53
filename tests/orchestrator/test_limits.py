"""Each limit and what happens at it: iterations, sub-calls, concurrency, deadline, budget."""

from __future__ import annotations

import asyncio
import os
import sys
from decimal import Decimal
from pathlib import Path

from orchestrator.store import find_step, get_node, list_steps, set_run_budget
from orchestrator.vocabulary import LeafMode
from orchestrator.workflows import RLMNode
from orchestrator.workflows.common import SA_STATUS
from orchestrator.workflows.types import Limits, root_id
from tests.orchestrator.harness import Harness, word_context


async def test_max_iterations_then_one_forced_final_answer(harness: Harness, tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("x" * 1234)

    out = await harness.run(
        "What is the magic number?", path, model="scripted/loop", limits=Limits(max_iterations=2)
    )

    assert out.result.status == "completed"
    assert out.summary.answer == "I ran out of iterations. All I know: the context has 1234 characters."
    with harness.sessions() as s:
        steps = [st for st in list_steps(s, root_id(out.run_id)) if st.kind == "generate"]
    assert [st.iteration for st in steps] == [1, 2, 3]
    assert [bool((st.data or {}).get("forced_final")) for st in steps] == [False, False, True]


async def test_max_subcalls_raises_in_the_cell_and_the_model_uses_bigger_chunks(
    harness: Harness, tmp_path: Path
) -> None:
    path, expected = word_context(tmp_path / "w.txt", 3_000)

    out = await harness.run(
        "How many times does the word 'ERROR' appear?",
        path,
        model="scripted/mapreduce?chunks=20",
        limits=Limits(max_subcalls=8),
    )

    assert out.result.status == "completed", out.result.error
    assert out.summary.answer == str(expected)
    leaves = [r for r in out.tree if r.kind == "leaf"]
    assert len(leaves) == 5  # 20 and 10 were refused; 5 fit under the limit of 8
    with harness.sessions() as s:
        errors = [
            (st.data or {}).get("error") or ""
            for st in list_steps(s, root_id(out.run_id))
            if st.kind == "cell"
        ]
    refused = [e for e in errors if "max_subcalls reached" in e]
    assert len(refused) == 2
    assert "batch several questions" in refused[0]


async def test_subcall_concurrency_per_node_is_bounded(harness: Harness, tmp_path: Path) -> None:
    path, expected = word_context(tmp_path / "w.txt", 2_000)

    out = await harness.run(
        "How many times does the word 'ERROR' appear?",
        path,
        model="scripted/mapreduce?chunks=8",
        sub_model="scripted/leaf?latency_ms=300",
        limits=Limits(max_concurrency=2),
    )

    assert out.summary.answer == str(expected)
    intervals = []
    with harness.sessions() as s:
        for row in out.tree:
            if row.kind == "leaf":
                step = find_step(s, row.node_id, 0, "leaf", 0)
                assert step is not None and step.duration_ms is not None
                end = step.created_at.timestamp()
                intervals.append((end - step.duration_ms / 1000, end))
    assert len(intervals) == 8
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 2


async def test_deadline_ends_the_node_timed_out_keeping_its_partial_answer(
    harness: Harness, tmp_path: Path
) -> None:
    path = tmp_path / "c.txt"
    path.write_text("some text")

    out = await harness.run(
        "What is the magic number?", path, model="scripted/partial?latency_ms=300", deadline_s=4.0
    )

    assert out.result.status == "timed_out"
    assert out.summary.status == "timed_out"
    assert out.summary.answer is not None and out.summary.answer.startswith("partial after iteration")
    assert "deadline" in (out.result.error or "")


async def test_sub_calls_queued_for_a_slot_at_the_deadline_are_not_started(
    harness: Harness, tmp_path: Path
) -> None:
    """40 sub-calls, 4 at a time, each slower than the deadline: the 4 calling time out at the deadline,
    and the 36 queued behind them are not started then, neither as workflows nor in the store."""
    path, _ = word_context(tmp_path / "w.txt", 4_000)
    out = await harness.run(
        "How many times does the word 'ERROR' appear?",
        path,
        model="scripted/mapreduce?chunks=40",
        sub_model="scripted/leaf?latency_ms=60000",
        limits=Limits(max_concurrency=4, heartbeat_timeout_s=10, leaf_mode=LeafMode.WORKFLOW),
        deadline_s=5.0,
    )

    assert out.result.status == "timed_out"
    leaves = [row for row in out.tree if row.kind == "leaf"]
    assert len(leaves) == 4 and all(row.status == "timed_out" for row in leaves)
    # Each call timed itself out at the deadline and said so; none was tried again after it.
    assert all("before the model call started" not in (row.error or "") for row in leaves), leaves
    started = [w.id async for w in harness.client.list_workflows(f'RlmRunId = "{out.run_id}"')]
    assert sorted(started) == sorted([root_id(out.run_id)] + [row.node_id for row in leaves])


async def _wait_status(harness: Harness, node_id: str, status: str, timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while loop.time() < end:
        with harness.sessions() as s:
            if get_node(s, node_id).status == status:
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{node_id} never reached {status}")


async def test_budget_pauses_then_resume_after_raising_it(harness: Harness, tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("the magic number is 5150 and nothing else")
    handle = await harness.start(
        "What is the magic number?", path, model="scripted/search", budget_usd="0.001"
    )
    run_id = handle.id.rsplit("/", 1)[0]

    await _wait_status(harness, handle.id, "paused_budget")
    state = await handle.query(RLMNode.state)
    assert state.status == "paused_budget" and "budget" in (state.message or "")
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(SA_STATUS) == "paused_budget"

    with harness.sessions.begin() as s:
        set_run_budget(s, run_id, Decimal("1"))
    await handle.signal(RLMNode.resume)
    out = await harness.finish(handle)

    assert out.result.status == "completed"
    assert out.summary.answer == "5150"
    assert Decimal(0) < out.summary.cost <= Decimal("1")


async def test_budget_pause_then_abort(harness: Harness, tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("the magic number is 5150")
    handle = await harness.start("What is the magic number?", path, model="scripted/search", budget_usd="0")

    await _wait_status(harness, handle.id, "paused_budget")
    await handle.signal(RLMNode.abort)
    out = await asyncio.wait_for(harness.finish(handle), timeout=60)

    assert out.result.status == "aborted"
    assert out.summary.status == "aborted"
    assert out.summary.cost == 0
    assert "budget" in (out.result.error or "")


async def test_rlm_resume_raises_the_run_budget_and_resumes_paused_nodes(
    harness: Harness, tmp_path: Path
) -> None:
    path = tmp_path / "c.txt"
    path.write_text("the magic number is 8086")
    handle = await harness.start(
        "What is the magic number?", path, model="scripted/search", budget_usd="0.001"
    )
    run_id = handle.id.rsplit("/", 1)[0]
    await _wait_status(harness, handle.id, "paused_budget")
    settings = harness.settings
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": settings.temporal_address or "",
        "RLM_DATABASE_URL": settings.database_url,
        "RLM_DATA_DIR": str(settings.data_dir),
    }

    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "rlm"),
        "resume",
        run_id,
        "--budget-usd",
        "0.5",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    assert f"resumed 1 paused node(s) of run {run_id}" in stdout.decode()

    out = await asyncio.wait_for(harness.finish(handle), timeout=60)
    assert out.result.status == "completed" and out.summary.answer == "8086"


async def test_continue_as_new_between_iterations_keeps_the_node_going(
    harness: Harness, tmp_path: Path
) -> None:
    path = tmp_path / "c.txt"
    path.write_text("y" * 321)

    out = await harness.run(
        "What is the magic number?",
        path,
        model="scripted/loop",
        limits=Limits(max_iterations=4, iterations_per_run=2),
    )

    assert out.result.status == "completed"
    assert out.summary.answer == "I ran out of iterations. All I know: the context has 321 characters."
    with harness.sessions() as s:
        steps = list_steps(s, root_id(out.run_id))
    assert [st.iteration for st in steps if st.kind == "generate"] == [1, 2, 3, 4, 5]
    assert [st.iteration for st in steps if st.kind == "cell"] == [1, 2, 3, 4]
    runs: list[object] = []
    for _ in range(50):  # visibility is written asynchronously
        runs = [w async for w in harness.client.list_workflows(f'WorkflowId = "{root_id(out.run_id)}"')]
        if len(runs) >= 3:
            break
        await asyncio.sleep(0.2)
    assert len(runs) == 3  # iterations 1-2, 3-4, then 5 (the forced final answer)
    assert out.result.iterations == 5
