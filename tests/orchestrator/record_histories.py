"""Record workflow histories for the replay test: ``python -m tests.orchestrator.record_histories``.

Runs a few scenarios (map-reduce with a batched Update, a depth-2 tree, the forced final answer, a
budget pause and resume, continue-as-new, a batch refused for want of history room, inline leaves with
and without a budget hold, the default ``auto`` leaf mode with a narrow and a wide batch) on an embedded
dev server with a PostgreSQL schema of its own, and writes each workflow's last run's history to
tests/orchestrator/histories/<scenario>-<node>.json, and the runs it continued as new from to
<scenario>-<node>-run<k>.json. A replay failure means the workflow code no longer issues the commands a
history holds. Until the first release a deliberate change re-records every scenario; after it, a change
gets a ``workflow.patched`` branch and its new histories are added next to the old ones
(docs/orchestrator.md, "Workflow versioning"). Name scenarios to record only those (``python -m
tests.orchestrator.record_histories inline``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from sqlalchemy import create_engine, text
from temporalio.client import Client, WorkflowHistory

from orchestrator.devstack import DevServer, DevServerConfig
from orchestrator.runs import RunRequest, start_run
from orchestrator.settings import load_settings
from orchestrator.store import get_node, make_engine, make_session_factory, set_run_budget, upgrade
from orchestrator.store.errors import NotFound
from orchestrator.vocabulary import AUTO_INLINE_FROM, LeafMode
from orchestrator.worker import running_worker
from orchestrator.workflows import RLMNode
from orchestrator.workflows.types import Limits
from tests.conftest import test_database_url
from tests.orchestrator.harness import word_context
from tests.orchestrator.histories_lib import run_histories

OUT = Path(__file__).parent / "histories"


async def main(only: set[str]) -> None:
    schema = f"rec_{uuid.uuid4().hex[:8]}"
    admin = create_engine(test_database_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = f"{test_database_url()}?options=-csearch_path%3D{schema}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp)
            await record(data, url, only)
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
        scenarios = {
            "mapreduce": RunRequest(
                "How many times does the word 'ERROR' appear? Use 5 chunks.",
                path,
                model="scripted/mapreduce",
                sub_model="scripted/leaf",
            ),
            "depth2": RunRequest(
                "How many times does the word 'ERROR' appear?",
                path,
                model="scripted/recurse",
                sub_model="scripted/recurse",
                limits=Limits(max_depth=2),
            ),
            "forced": RunRequest(
                "What is the magic number?", path, model="scripted/loop", limits=Limits(max_iterations=2)
            ),
            "continued": RunRequest(
                "What is the magic number?",
                path,
                model="scripted/loop",
                limits=Limits(max_iterations=3, iterations_per_run=2),
            ),
            "budget": RunRequest(
                "How many times does the word 'ERROR' appear?",
                path,
                model="scripted/search",
                budget_usd=Decimal("0.001"),
            ),
            "inline": RunRequest(
                "How many times does the word 'ERROR' appear? Use 5 chunks.",
                path,
                model="scripted/mapreduce",
                sub_model="scripted/leaf",
                limits=Limits(leaf_mode=LeafMode.INLINE),
            ),
            # The default leaf mode: a narrow batch as Leaf workflows, a wide one inline.
            "autonarrow": RunRequest(
                "How many times does the word 'ERROR' appear? Use 5 chunks.",
                path,
                model="scripted/mapreduce",
                sub_model="scripted/leaf",
                limits=Limits(leaf_mode=LeafMode.AUTO),
            ),
            "autowide": RunRequest(
                f"How many times does the word 'ERROR' appear? Use {AUTO_INLINE_FROM} chunks.",
                path,
                model="scripted/mapreduce",
                sub_model="scripted/leaf",
                limits=Limits(leaf_mode=LeafMode.AUTO),
            ),
            # The root's first run refuses its 8 leaves for want of history room (about 15 events and
            # 8 x 9 to come) and continues as new; the second run's 4 fit.
            "historyroom": RunRequest(
                "How many times does the word 'ERROR' appear? Use 8 chunks.",
                path,
                model="scripted/mapreduce",
                sub_model="scripted/leaf",
                limits=Limits(max_run_events=55),
            ),
            "inlinebudget": RunRequest(
                "How many times does the word 'ERROR' appear? Use 3 chunks.",
                path,
                model="scripted/mapreduce",
                sub_model="scripted/leaf?price_in=1000&price_out=1000",
                budget_usd=Decimal("0.5"),
                limits=Limits(leaf_mode=LeafMode.INLINE),
            ),
        }
        if only:
            scenarios = {k: v for k, v in scenarios.items() if k in only}
        OUT.mkdir(exist_ok=True)
        async with running_worker(client, settings):
            for name, req in scenarios.items():
                req = replace(req, run_id=f"rec-{name}")
                handle = await start_run(client, sessions, req, settings.task_queue)
                if name == "budget":
                    await _resume_after_pause(handle, sessions, req.run_id or "")
                if name == "inlinebudget":
                    await _resume_after_pause(handle, sessions, req.run_id or "", f"{handle.id}.1")
                await handle.result()
                with sessions() as s:
                    from orchestrator.store import list_nodes

                    nodes = list_nodes(s, req.run_id or "")
                    # Inline leaves have no workflow (and so no history) of their own. Each scenario's
                    # leaves come from one batched call.
                    leaves = sum(1 for n in nodes if n.kind == "leaf")
                    count = len(nodes) - (leaves if req.limits.leaf_mode.runs_inline(leaves) else 0)
                for history in await run_histories(client, req.run_id or "", expected=count):
                    node = history.workflow_id.rsplit("/", 1)[1]
                    (OUT / f"{name}-{node}.json").write_text(history.to_json())
                    for number, earlier in enumerate(await _earlier_runs(client, history.workflow_id), 1):
                        (OUT / f"{name}-{node}-run{number}.json").write_text(earlier.to_json())
    engine.dispose()


async def _earlier_runs(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """The runs a workflow continued as new from, oldest first (its last run is recorded already)."""
    runs = [w async for w in client.list_workflows(f'WorkflowId = "{workflow_id}"')]
    runs.sort(key=lambda w: w.start_time)
    return [await client.get_workflow_handle(w.id, run_id=w.run_id).fetch_history() for w in runs[:-1]]


async def _resume_after_pause(handle, sessions, run_id: str, held: str | None = None) -> None:  # type: ignore[no-untyped-def]
    while True:
        with sessions() as s:
            try:
                if get_node(s, held or handle.id).status == "paused_budget":
                    break
            except NotFound:
                pass
        await asyncio.sleep(0.2)
    with sessions.begin() as s:
        set_run_budget(s, run_id, Decimal("100"))
    await handle.signal(RLMNode.resume)


if __name__ == "__main__":
    asyncio.run(main(set(sys.argv[1:])))
