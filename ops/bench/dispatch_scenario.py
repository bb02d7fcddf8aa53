"""``bench_subcalls.py --scenarios dispatch``: the bare Temporal costs behind a sub-call.

A no-op Update round trip and a no-op child workflow started and awaited from workflow code, on a dev
server with the given dispatch settings and workflow cache; no engine code runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from figures import pct
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from orchestrator.devstack import FAST_DISPATCH, SQLITE_PRAGMAS, DevServer, DevServerConfig


@workflow.defn(name="BenchNoop")
class BenchNoop:
    @workflow.run
    async def run(self, x: int) -> int:
        return x


@dataclass
class ChildTimes:
    by_workflow_clock: list[float]  # workflow.time(): the recorded task times, what really passed
    by_perf_counter: list[float]  # the process clock inside workflow code: replay time when uncached


@workflow.defn(name="BenchParent")
class BenchParent:
    def __init__(self) -> None:
        self.children = False
        self.done = False

    @workflow.run
    async def run(self, n: int) -> ChildTimes:
        times = ChildTimes([], [])
        # The Updates are timed first, alone: children started meanwhile would slow them down.
        await workflow.wait_condition(lambda: self.children)
        for i in range(n):
            started, counter = workflow.time(), time.perf_counter()
            await workflow.execute_child_workflow(BenchNoop.run, i, id=f"{workflow.info().workflow_id}/{i}")
            times.by_workflow_clock.append((workflow.time() - started) * 1000)
            times.by_perf_counter.append((time.perf_counter() - counter) * 1000)
        await workflow.wait_condition(lambda: self.done)
        return times

    @workflow.update
    async def noop(self, x: int) -> int:
        return x

    @workflow.signal
    def start_children(self) -> None:
        self.children = True

    @workflow.signal
    def finish(self) -> None:
        self.done = True


async def dispatch(tmp: Path, fast: bool, cached: bool, n: int = 60) -> dict[str, Any]:
    name = f"dispatch-{'fast' if fast else 'default'}-{'cached' if cached else 'uncached'}"
    config = DevServerConfig(
        data_dir=tmp / name,
        ui=False,
        dynamic_config=dict(FAST_DISPATCH) if fast else {},
        sqlite_pragmas=SQLITE_PRAGMAS if fast else (),
    )
    with DevServer(config) as server:
        client = await Client.connect(server.address)
        # Unsandboxed: these two workflows live in this script, and the uncached case reads the
        # process clock inside workflow code on purpose (see ChildTimes).
        async with Worker(
            client,
            task_queue="bench-dispatch",
            workflows=[BenchParent, BenchNoop],
            workflow_runner=UnsandboxedWorkflowRunner(),
            max_cached_workflows=1000 if cached else 0,
        ):
            handle = await client.start_workflow(
                BenchParent.run, n, id="bench-parent", task_queue="bench-dispatch"
            )
            updates = []
            for i in range(n):
                t = time.perf_counter()
                await handle.execute_update(BenchParent.noop, i)
                updates.append((time.perf_counter() - t) * 1000)
            await handle.signal(BenchParent.start_children)
            await handle.signal(BenchParent.finish)
            children = await handle.result()
    return {
        "update_ms_p50": round(pct(updates, 0.5), 1),
        "update_ms_p95": round(pct(updates, 0.95), 1),
        "child_ms_p50": round(pct(children.by_workflow_clock, 0.5), 1),
        "child_ms_p95": round(pct(children.by_workflow_clock, 0.95), 1),
        "child_ms_p50_by_perf_counter_in_workflow": round(pct(children.by_perf_counter, 0.5), 1),
    }
