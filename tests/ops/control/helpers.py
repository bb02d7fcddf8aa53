"""Helpers for the control tests: waiting on the store and on visibility, ``rlm`` in a subprocess."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.worker import Replayer

from orchestrator.ids import quoted
from orchestrator.store import get_node, get_run, list_nodes, list_steps
from orchestrator.store.errors import NotFound
from orchestrator.vocabulary import NodeKind, Status
from orchestrator.workflow_runner import workflow_runner
from orchestrator.workflows import WORKFLOWS, RLMNode
from orchestrator.workflows.types import Limits, NodeResult
from tests.orchestrator.harness import Harness, word_context

RLM = str(Path(sys.executable).parent / "rlm")
T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, timeout_s: float = 30.0, every_s: float = 0.2
) -> T:
    """Poll ``probe`` until it returns something other than None (bounded)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while True:
        value = await probe()
        if value is not None:
            return value
        if loop.time() >= end:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(every_s)


def leaves_in_flight(sessions: sessionmaker[Session], run_id: str) -> int:
    """Leaves calling their model now: running, with the run holding a reservation."""
    with sessions() as s:
        try:
            if get_run(s, run_id).reserved_nanos == 0:
                return 0
        except NotFound:
            return 0
        return sum(1 for n in list_nodes(s, run_id) if n.kind == NodeKind.LEAF and n.status == Status.RUNNING)


def node_status(sessions: sessionmaker[Session], node_id: str) -> str | None:
    with sessions() as s:
        try:
            return get_node(s, node_id).status
        except NotFound:
            return None


async def wait_status(
    sessions: sessionmaker[Session], node_id: str, status: str, timeout_s: float = 30.0
) -> None:
    async def probe() -> bool | None:
        return True if node_status(sessions, node_id) == status else None

    await eventually(probe, f"{node_id} to be {status}", timeout_s)


def step_count(sessions: sessionmaker[Session], node_id: str, kind: str) -> int:
    with sessions() as s:
        return sum(1 for st in list_steps(s, node_id) if st.kind == kind)


async def rlm(env: dict[str, str], *args: str, timeout_s: float = 120.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        RLM, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    return proc.returncode or 0, out.decode(), err.decode()


async def rlm_json(env: dict[str, str], *args: str) -> Any:
    code, out, err = await rlm(env, *args, "--json")
    assert code == 0, err
    return json.loads(out)


async def replay_all(client: Client, workflow_ids: list[str]) -> dict[str, str]:
    """Replay every run of each workflow (a reset or restart leaves several); returns the failures."""
    histories: list[WorkflowHistory] = []
    for wid in workflow_ids:
        async for wf in client.list_workflows(f"WorkflowId = {quoted(wid)}"):
            handle = client.get_workflow_handle(wid, run_id=wf.run_id)
            histories.append(await handle.fetch_history())

    async def each() -> Any:
        for h in histories:
            yield h

    replayer = Replayer(workflows=WORKFLOWS, workflow_runner=workflow_runner())
    results = await replayer.replay_workflows(each(), raise_on_replay_failure=False)
    return {wid: str(err) for wid, err in results.replay_failures.items()}


async def first_leaf_calling(
    harness: Harness, tmp_path: Path, limits: Limits | None = None
) -> tuple[WorkflowHandle[RLMNode, NodeResult], str, int]:
    """A run whose root asks its sub-calls one at a time, each a 3 s model call, once the first one
    calls: (the root's handle, the first leaf's id, the right answer)."""
    path, expected = word_context(tmp_path / "w.txt", 1_500)
    handle = await harness.start(
        "How many times does the word 'ERROR' appear? Use 3 chunks.",
        path,
        model="scripted/mapreduce?parallel=0",
        sub_model="scripted/leaf?latency_ms=3000",
        limits=limits,
    )
    leaf = f"{handle.id}.1"

    async def leaf_running() -> bool | None:
        return True if node_status(harness.sessions, leaf) == Status.RUNNING else None

    await eventually(leaf_running, "the first sub-call")
    return handle, leaf, expected
