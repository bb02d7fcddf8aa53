"""Replay of the recorded operator-path histories (pause/resume, abort, restart, a pause passed down a
fan-out with a held sub-call, RlmCost updated during a long cell): the determinism guard for the
workflow code those paths run. Record them with ``python -m tests.ops.control.record_histories``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from orchestrator.workflow_runner import workflow_runner
from orchestrator.workflows import WORKFLOWS

HISTORIES = Path(__file__).parent / "histories"


async def test_recorded_operator_histories_replay() -> None:
    files = sorted(HISTORIES.glob("*.json"))
    scenarios = {f.name.split("-", 1)[0] for f in files}
    assert scenarios == {"paused", "aborted", "restarted", "held", "midcell"}, (
        "record: python -m tests.ops.control.record_histories"
    )
    histories = [WorkflowHistory.from_json(f"recorded/{f.stem}", f.read_text()) for f in files]

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    replayer = Replayer(workflows=WORKFLOWS, workflow_runner=workflow_runner())
    results = await replayer.replay_workflows(each(), raise_on_replay_failure=False)
    assert {wid: str(err) for wid, err in results.replay_failures.items()} == {}
