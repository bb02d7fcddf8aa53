"""A node's workflow run takes sub-calls only while its history has room for them under the Temporal
server's limits: past its room, the cell's batch is refused with what to do and the node goes on in a
fresh run, where the server would have terminated the workflow and left its run unfinished.

Its own dev server, with the history limited to 300 events or 400 KB. By events: the first cell's 80
leaves would take about 380 of them, and the node's room (220) is for about 20 (9 events each at most).
By bytes: a leaf of this run counts about 9 KB, so the node's room (300 KB) takes 20 leaves, not 40.
"""

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

SERVER_EVENTS = 300
SERVER_BYTES = 400_000
# The server's limits, and the node's room under them; leaf workflows, whose room the figures below are.
CASES = {
    "events": (
        {"limit.historyCount.error": str(SERVER_EVENTS), "limit.historyCount.warn": "100"},
        Limits(max_run_events=220, leaf_mode=LeafMode.WORKFLOW),
    ),
    "bytes": (
        {"limit.historySize.error": str(SERVER_BYTES), "limit.historySize.warn": "100000"},
        Limits(max_run_bytes=300_000, leaf_mode=LeafMode.WORKFLOW),
    ),
}


@pytest.fixture(params=sorted(CASES))
def limited(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, DevServer]]:
    with limited_server(tmp_path / "limited", CASES[request.param][0]) as started:
        yield request.param, started


async def test_a_batch_past_the_history_room_is_refused_and_the_node_goes_on_in_a_fresh_run(
    limited: tuple[str, DevServer], settings: Settings, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    case, server = limited
    harness = await harness_on(server, settings, sessions, "history-limit")
    client = harness.client
    path, expected = word_context(tmp_path / "w.txt", 2_000)

    async with running_worker(client, harness.settings):
        out = await harness.run(
            "How many times does the word 'ERROR' appear? Use 80 chunks.",
            path,
            model="scripted/mapreduce",
            limits=CASES[case][1],
        )

    # Iteration 1 asked for 80 leaves at once and iteration 2 for 40, each refused with none started;
    # iteration 3, in the third workflow run, asked for 20 and answered.
    assert out.result.status == "completed", out.result.error
    assert out.summary.answer == str(expected)
    with sessions() as s:
        cells = [st for st in list_steps(s, out.result.node_id) if st.kind == "cell"]
    first_error = str((cells[0].data or {}).get("error") or "")
    assert "history events" in first_error and "80 more sub-calls" in first_error, first_error
    room = {"events": "past the 220 events or 45 MB", "bytes": "past the 45,000 events or 0.3 MB"}[case]
    assert room in first_error, first_error
    assert out.summary.nodes == 1 + 20
    runs = [w async for w in client.list_workflows(f'WorkflowId = "{out.result.node_id}"')]
    assert len(runs) == 3  # continued as new after each refusal
    for run in runs:
        history = await client.get_workflow_handle(run.id, run_id=run.run_id).fetch_history()
        assert len(history.events) < SERVER_EVENTS
        assert sum(event.ByteSize() for event in history.events) < SERVER_BYTES
    sandbox.reap(labels={"run": out.run_id})
