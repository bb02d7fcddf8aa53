"""Sandbox sessions move between workers: a worker without the node's session restores the last
snapshot from the store; a cell already recorded is not run again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.testing import ActivityEnvironment

import sandbox
from orchestrator.activities.cells import CellActivities, SessionCache
from orchestrator.activities.deps import Deps
from orchestrator.runs import RunRequest, prepare_run
from orchestrator.store import list_steps
from orchestrator.workflows.types import ExecuteInput, NodeInput, Text
from tests.orchestrator.harness import Harness


def _worker(harness: Harness, name: str) -> tuple[CellActivities, SessionCache]:
    deps = Deps(settings=harness.settings, sessions=harness.sessions, client=harness.client, worker_id=name)
    cache = SessionCache()
    return CellActivities(deps, cache, sandbox.SandboxLimits()), cache


async def _execute(
    cells: CellActivities, node: NodeInput, iteration: int, index: int, number: int, code: str
):  # type: ignore[no-untyped-def]
    inp = ExecuteInput(node=node, iteration=iteration, index=index, number=number, code=Text(inline=code))
    return await ActivityEnvironment().run(cells.execute, inp)


async def test_a_second_worker_restores_the_snapshot_and_recorded_cells_are_not_rerun(
    harness: Harness, tmp_path: Path
) -> None:
    context = tmp_path / "c.txt"
    context.write_text("abc")
    node = prepare_run(harness.sessions, RunRequest("q", context, run_id=f"sess-{tmp_path.name[-8:]}")).root
    worker_a, cache_a = _worker(harness, "worker-a")
    worker_b, cache_b = _worker(harness, "worker-b")
    try:
        first = await _execute(worker_a, node, 1, 0, 1, "x = 41\nprint(len(context))")
        assert first.error is None, first.error

        second = await _execute(worker_b, node, 2, 0, 2, "x = x + 1\nprint(x)")
        assert second.error is None, second.error
        with harness.sessions() as s:
            steps = {(st.iteration, st.index): st.data or {} for st in list_steps(s, node.node_id)}
        assert steps[(1, 0)]["stdout"].strip() == "3"
        assert steps[(2, 0)]["stdout"].strip() == "42"

        # Worker A's session is behind the node now: it restores instead of reusing stale state.
        third = await _execute(worker_a, node, 3, 0, 3, "x = x * 2\nprint(x)")
        again = await _execute(worker_b, node, 3, 0, 3, "x = 0\nprint('must not run')")
        assert third.error is None and again.error is None, (third.error, again.error)
        with harness.sessions() as s:
            cell3 = [st for st in list_steps(s, node.node_id) if st.iteration == 3]
        assert len(cell3) == 1 and (cell3[0].data or {})["stdout"].strip() == "84"
    finally:
        await asyncio.to_thread(cache_a.close_all)
        await asyncio.to_thread(cache_b.close_all)
