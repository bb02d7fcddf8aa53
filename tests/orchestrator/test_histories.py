"""Payload sizes in a run's histories, and replay of recorded histories (the determinism guard)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from orchestrator.vocabulary import LeafMode
from orchestrator.workflow_runner import workflow_runner
from orchestrator.workflows import WORKFLOWS
from orchestrator.workflows.types import Limits
from tests.orchestrator.harness import Harness, word_context
from tests.orchestrator.histories_lib import run_histories

HISTORIES = Path(__file__).parent / "histories"
LIMIT = 256 * 1024


async def _each(histories: list[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for history in histories:
        yield history


def _payload_sizes(history: WorkflowHistory) -> list[int]:
    sizes: list[int] = []

    def walk(message: object) -> None:
        if isinstance(message, Payload):
            sizes.append(message.ByteSize())
            return
        for _, value in message.ListFields():  # type: ignore[attr-defined]
            items = value if isinstance(value, (list, tuple)) or hasattr(value, "extend") else [value]
            for item in items:
                if hasattr(item, "ListFields"):
                    walk(item)
                elif hasattr(item, "values") and not isinstance(item, (str, bytes)):
                    for sub in item.values():
                        if hasattr(sub, "ListFields"):
                            walk(sub)

    for event in history.events:
        walk(event)
    return sizes


async def test_every_payload_of_a_big_map_reduce_stays_under_256_kib(
    harness: Harness, tmp_path: Path
) -> None:
    # ~3 MB of context in 100 chunks: each chunk prompt (~30 KB) and the context travel as blob refs.
    path, expected = word_context(tmp_path / "big.txt", 450_000)
    assert path.stat().st_size > 2_500_000

    out = await harness.run(
        "How many times does the word 'ERROR' appear? Use 100 chunks.",
        path,
        model="scripted/mapreduce",
        limits=Limits(leaf_mode=LeafMode.WORKFLOW),
    )
    assert out.summary.answer == str(expected)

    histories = await run_histories(harness.client, out.run_id, expected=101)
    sizes = [size for h in histories for size in _payload_sizes(h)]
    assert len(sizes) > 500
    assert max(sizes) < LIMIT, f"largest payload {max(sizes)} bytes"
    # The whole root history (100 children, one batched Update) stays small too.
    root = next(h for h in histories if h.workflow_id.endswith("/0"))
    assert sum(e.ByteSize() for e in root.events) < 2 * LIMIT


async def test_recorded_histories_replay_deterministically() -> None:
    files = sorted(HISTORIES.glob("*.json"))
    assert len(files) >= 4, "record them with: python -m tests.orchestrator.record_histories"
    histories = [WorkflowHistory.from_json(f"recorded/{f.stem}", f.read_text()) for f in files]
    replayer = Replayer(workflows=WORKFLOWS, workflow_runner=workflow_runner())
    results = await replayer.replay_workflows(_each(histories), raise_on_replay_failure=False)
    failures = {wid: str(err) for wid, err in results.replay_failures.items()}
    assert failures == {}


async def test_fresh_histories_of_a_depth_two_run_replay(harness: Harness, tmp_path: Path) -> None:
    path, _ = word_context(tmp_path / "w.txt", 2_000)
    out = await harness.run(
        "How many times does the word 'ERROR' appear?",
        path,
        model="scripted/recurse",
        sub_model="scripted/recurse",
        limits=Limits(max_depth=2),
    )
    histories = await run_histories(harness.client, out.run_id, expected=len(out.tree))
    replayer = Replayer(workflows=WORKFLOWS, workflow_runner=workflow_runner())
    results = await replayer.replay_workflows(_each(histories), raise_on_replay_failure=False)
    assert {wid: str(err) for wid, err in results.replay_failures.items()} == {}
