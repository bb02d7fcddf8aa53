"""What the Temporal Web UI shows of a run: each node's summary and static details (fixed at start),
its current details (kept up to date while it works, read through the UI's metadata query), and the
summaries of its activities in the history, and the Build ID of the engine's code on each workflow task.
Visibility is eventually consistent: reads poll."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle
from temporalio.converter import PayloadConverter

from orchestrator import worker as worker_module
from orchestrator.workflows.types import Limits
from tests.ops.control.helpers import eventually
from tests.orchestrator.harness import Harness, word_context

QUERY = "How many times does the word 'ERROR' appear? Use 4 chunks.\nCount carefully."
METADATA_QUERY = "__temporal_workflow_metadata"


async def current_details(handle: WorkflowHandle[object, object]) -> str:
    metadata = await handle.query(METADATA_QUERY, result_type=WorkflowMetadata)
    return str(metadata.current_details)


async def activity_summaries(client: Client, workflow_id: str) -> list[str]:
    converter = PayloadConverter.default
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return [
        str(converter.from_payload(event.user_metadata.summary, str))
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and event.user_metadata.HasField("summary")
    ]


async def build_ids(client: Client, workflow_id: str) -> set[str]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return {
        event.workflow_task_completed_event_attributes.worker_version.build_id
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    }


async def test_summaries_and_live_details_of_a_run(harness: Harness, tmp_path: Path) -> None:
    path, expected = word_context(tmp_path / "w.txt", 2_000)
    handle = await harness.start(
        QUERY,
        path,
        model="scripted/mapreduce",
        sub_model="scripted/leaf?latency_ms=1500",
        limits=Limits(max_concurrency=2, heartbeat_timeout_s=15),
    )
    run_id = handle.id.rsplit("/", 1)[0]
    root = harness.client.get_workflow_handle(handle.id)

    # The root's summary is the query's first line; its details say where it sits and its limits.
    desc = await root.describe()
    assert await desc.static_summary() == "How many times does the word 'ERROR' appear? Use 4 chunks."
    fixed = await desc.static_details() or ""
    assert f"`{run_id}`" in fixed and "`default`" in fixed and "scripted/mapreduce" in fixed
    assert "**Limits** 30 iterations" in fixed and "2 at once" in fixed

    # During: the cell waits on its children, two at a time; the details follow the sub-calls.
    async def halfway() -> str | None:
        now = await current_details(root)
        return now if "**Sub-calls** 2 of 4 finished" in now else None

    live = await eventually(halfway, "the root's details to show 2 of 4 sub-calls finished")
    assert "**Iteration** 1 of 30 · running cell 1.0, 2 sub-calls in flight" in live
    assert "**Spend** 0.00" in live and " USD (this node " in live

    # A child's summary is its prompt's first line (its instruction), not a blob hash.
    child = harness.client.get_workflow_handle(f"{handle.id}.1")
    child_desc = await child.describe()
    summary = await child_desc.static_summary() or ""
    assert summary.startswith("Count the matches of the regex /") and "blob" not in summary
    assert "· leaf · depth 1 of 1" in (await child_desc.static_details() or "")
    # Both run their model calls inside workflow tasks, which get the run's heartbeat timeout.
    for d in (desc, child_desc):
        assert d.raw_description.execution_config.default_workflow_task_timeout.ToSeconds() == 15

    out = await harness.finish(handle)
    assert out.summary.answer == str(expected)

    # After: the details say how it ended; the history names each step.
    ended = await current_details(root)
    assert "**completed**" in ended and "**Sub-calls** 4 of 4 finished" in ended
    leaf_ended = await current_details(child)
    assert "**completed**" in leaf_ended
    summaries = await activity_summaries(harness.client, handle.id)
    assert summaries[0] == "iteration 1: the model's reply"
    assert any(s.startswith("cell 1.0: ") and len(s) > len("cell 1.0: ") for s in summaries)

    # Every workflow task names the engine's code as its Build ID, not Temporal's default digest.
    assert await build_ids(harness.client, handle.id) == {worker_module.build_id()}
    assert await build_ids(harness.client, f"{handle.id}.1") == {worker_module.build_id()}


def test_the_build_id_changes_with_the_engine_s_source_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("X = 1\n")
    (package / "notes.txt").write_text("not code")
    monkeypatch.setattr(worker_module, "CODE_ROOTS", (package,))

    def fresh() -> str:
        worker_module.build_id.cache_clear()
        return worker_module.build_id()

    try:
        first = fresh()
        assert first.startswith("durable-rlm-") and fresh() == first
        (package / "notes.txt").write_text("edited")
        assert fresh() == first
        (package / "a.py").write_text("X = 2\n")
        assert fresh() != first
    finally:
        worker_module.build_id.cache_clear()
