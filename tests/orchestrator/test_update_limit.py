"""A workflow run takes at most ``history.maxTotalUpdates`` Updates: past it, the cell's sub-call
fails with a message telling the model what to do, and the node goes on in a fresh run.

Its own dev server, with the limit lowered to 4 so that a five-chunk sequential map reaches it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

import sandbox
from orchestrator.devstack import DevServer
from orchestrator.settings import Settings
from orchestrator.store import list_steps
from orchestrator.vocabulary import LeafMode
from orchestrator.worker import running_worker
from orchestrator.workflows.types import Limits
from tests.orchestrator.harness import word_context
from tests.orchestrator.limited_server import harness_on, limited_server

MAX_UPDATES = 4


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DevServer]:
    with limited_server(tmp_path / "limited", {"history.maxTotalUpdates": str(MAX_UPDATES)}) as started:
        yield started


async def test_past_the_servers_update_limit_the_cell_is_told_and_the_node_goes_on_in_a_fresh_run(
    server: DevServer, settings: Settings, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    harness = await harness_on(server, settings, sessions, "update-limit")
    client = harness.client
    path, expected = word_context(tmp_path / "w.txt", 1_000)

    async with running_worker(client, harness.settings):
        out = await harness.run(
            "How many times does the word 'ERROR' appear? Use 5 chunks.",
            path,
            model="scripted/mapreduce?parallel=0",
            limits=Limits(leaf_mode=LeafMode.INLINE, heartbeat_timeout_s=10),
        )

    # Iteration 1 asked for five sub-calls one by one; the fifth was refused and the cell failed.
    # Iteration 2 (a fresh workflow run) retried with fewer chunks and answered.
    assert out.result.status == "completed", out.result.error
    assert out.summary.answer == str(expected)
    with sessions() as s:
        cells = [st for st in list_steps(s, out.result.node_id) if st.kind == "cell"]
    first_error = str((cells[0].data or {}).get("error") or "")
    assert "history.maxTotalUpdates" in first_error and "llm_query_batched" in first_error, first_error
    runs = [w async for w in client.list_workflows(f'WorkflowId = "{out.result.node_id}"')]
    assert len(runs) >= 2  # continued as new between the iterations
    sandbox.reap(labels={"run": out.run_id})
