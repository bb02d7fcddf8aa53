"""Record workflow histories of the operator paths for the replay test:
``python -m tests.ops.control.record_histories [SCENARIO ...]`` (default: all).

Scenarios: ``paused`` (an operator pause, then resume), ``aborted`` (a depth-2 tree cancelled while
its children run), ``restarted`` (a root terminated mid-cell, then restarted by ``rlm resume``: both
runs), ``held`` (the root alone is paused during a fan-out cell: the pause is passed down, a child
holds its next sub-call unstarted, then resume and the run completes), ``midcell`` (a fan-out cell
long enough that RlmCost is updated with finished sub-calls before it ends). Each on an embedded dev
server with a PostgreSQL schema of its own; every run of every workflow goes to
tests/ops/control/histories/<scenario>-<node>-<n>.json. Nothing is released yet: after a deliberate
change to workflow code, delete the files and record every scenario again (after the first release:
docs/orchestrator.md, "Workflow versioning").
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from orchestrator import control
from orchestrator.devstack import DevServer, DevServerConfig
from orchestrator.runs import RunRequest, start_run
from orchestrator.settings import load_settings
from orchestrator.store import list_nodes, make_engine, make_session_factory, upgrade
from orchestrator.worker import running_worker
from orchestrator.workflows import RLMNode
from orchestrator.workflows.types import Limits, NodeResult, root_id
from tests.conftest import test_database_url
from tests.ops.control.helpers import eventually, node_status, step_count
from tests.orchestrator.harness import word_context

OUT = Path(__file__).parent / "histories"


async def _paused(client: Client, sessions: sessionmaker[Session], run_id: str) -> None:
    node = root_id(run_id)

    async def started() -> bool | None:
        return True if step_count(sessions, node, "generate") >= 1 else None

    await eventually(started, "a first step")
    await control.pause(client, sessions, control.parse_target(run_id))

    async def held() -> bool | None:
        return True if node_status(sessions, node) == "paused" else None

    await eventually(held, "the pause")
    await control.resume(client, sessions, control.parse_target(run_id))
    await client.get_workflow_handle(node, result_type=NodeResult).result()


async def _aborted(client: Client, sessions: sessionmaker[Session], run_id: str) -> None:
    handle = client.get_workflow_handle(root_id(run_id))

    async def children() -> bool | None:
        return True if (await handle.query(RLMNode.state)).children >= 2 else None

    await eventually(children, "children")
    await control.abort(client, sessions, control.parse_target(run_id))


async def _restarted(client: Client, sessions: sessionmaker[Session], run_id: str) -> None:
    handle = client.get_workflow_handle(root_id(run_id), result_type=NodeResult)

    async def two_done() -> bool | None:
        with sessions() as s:
            done = [n for n in list_nodes(s, run_id) if n.kind == "leaf" and n.status == "completed"]
        return True if len(done) >= 2 else None

    await eventually(two_done, "two sub-calls")
    await handle.terminate("recording: the node dies mid-cell")
    await control.resume(client, sessions, control.parse_target(run_id))
    await handle.result()


async def _held(client: Client, sessions: sessionmaker[Session], run_id: str) -> None:
    root = root_id(run_id)

    async def generating() -> bool | None:
        if node_status(sessions, f"{root}.1.1") is None:
            return None
        state = await client.get_workflow_handle(f"{root}.1.1").query(RLMNode.state)
        return True if state.step.startswith("generate") else None

    await eventually(generating, "the first grandchild's model call")
    await client.get_workflow_handle(root).signal(RLMNode.pause)

    async def held() -> bool | None:
        state = await client.get_workflow_handle(f"{root}.1").query(RLMNode.state)
        return True if state.held_subcalls == 1 else None

    await eventually(held, "a held sub-call")
    await control.resume(client, sessions, control.parse_target(run_id))
    await client.get_workflow_handle(root, result_type=NodeResult).result()


async def _completes(client: Client, sessions: sessionmaker[Session], run_id: str) -> None:
    await client.get_workflow_handle(f"{run_id}/0").result()


async def main() -> None:
    schema = f"rec_{uuid.uuid4().hex[:8]}"
    admin = create_engine(test_database_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = f"{test_database_url()}?options=-csearch_path%3D{schema}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            await record(Path(tmp), url, set(sys.argv[1:]))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))


async def record(data: Path, url: str, only: set[str]) -> None:
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    with DevServer(DevServerConfig(data_dir=data / "temporal", ui=False)) as server:
        settings = replace(
            load_settings({**os.environ, "RLM_DATA_DIR": str(data), "RLM_DATABASE_URL": url}),
            temporal_address=server.address,
        )
        client = await Client.connect(server.address)
        path, _ = word_context(data / "w.txt", 3_000)
        path.chmod(0o644)
        scenarios: dict[
            str, tuple[RunRequest, Callable[[Client, sessionmaker[Session], str], Awaitable[None]]]
        ] = {
            "paused": (
                RunRequest(
                    "What is the magic number?",
                    path,
                    model="scripted/loop?latency_ms=300",
                    limits=Limits(max_iterations=3),
                ),
                _paused,
            ),
            "aborted": (
                RunRequest(
                    "How many times does the word 'ERROR' appear?",
                    path,
                    model="scripted/recurse",
                    sub_model="scripted/recurse?latency_ms=3000",
                    limits=Limits(max_depth=2),
                ),
                _aborted,
            ),
            "restarted": (
                RunRequest(
                    "How many times does the word 'ERROR' appear? Use 5 chunks.",
                    path,
                    model="scripted/mapreduce?parallel=0",
                    sub_model="scripted/leaf?latency_ms=400",
                ),
                _restarted,
            ),
            "midcell": (
                RunRequest(
                    "How many times does the word 'ERROR' appear? Use 6 chunks.",
                    path,
                    model="scripted/mapreduce",
                    sub_model="scripted/leaf?latency_ms=2000",
                    limits=Limits(max_concurrency=2),
                ),
                _completes,
            ),
            "held": (
                RunRequest(
                    "How many times does the word 'ERROR' appear?",
                    path,
                    model="scripted/recurse?parallel=0",
                    sub_model="scripted/recurse?parallel=0&latency_ms=1500",
                    limits=Limits(max_depth=2),
                ),
                _held,
            ),
        }
        unknown = only - set(scenarios)
        if unknown:
            raise SystemExit(f"unknown scenario(s) {sorted(unknown)}; known: {', '.join(scenarios)}")
        OUT.mkdir(exist_ok=True)
        async with running_worker(client, settings):
            for name, (req, drive) in scenarios.items():
                if only and name not in only:
                    continue
                run_id = f"rec-{name}"
                await start_run(client, sessions, replace(req, run_id=run_id), settings.task_queue)
                await drive(client, sessions, run_id)
                await asyncio.sleep(1.0)  # visibility catches up
                runs = [w async for w in client.list_workflows(f'RlmRunId = "{run_id}"')]
                for n, wf in enumerate(sorted(runs, key=lambda w: (w.id, w.start_time))):
                    history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
                    node = wf.id.rsplit("/", 1)[1]
                    (OUT / f"{name}-{node}-{n}.json").write_text(history.to_json())
    engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
