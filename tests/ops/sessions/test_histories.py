"""Replay of a session's recorded histories (both runs of ``RLMSession`` around a continue-as-new, and
a turn's root): the determinism guard. Record them with ``python -m tests.ops.sessions.record_histories``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from orchestrator.workflow_runner import workflow_runner
from orchestrator.workflows import WORKFLOWS
from orchestrator.workflows.session import RLMSession

HISTORIES = Path(__file__).parent / "histories"


async def test_recorded_session_histories_replay() -> None:
    files = sorted(HISTORIES.glob("*.json"))
    assert [f.name for f in files] == ["session-0.json", "session-1.json", "turn-root-0.json"], (
        "record: python -m tests.ops.sessions.record_histories"
    )
    histories = [WorkflowHistory.from_json(f"recorded/{f.stem}", f.read_text()) for f in files]

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    replayer = Replayer(workflows=[*WORKFLOWS, RLMSession], workflow_runner=workflow_runner())
    results = await replayer.replay_workflows(each(), raise_on_replay_failure=False)
    assert {wid: str(err) for wid, err in results.replay_failures.items()} == {}
