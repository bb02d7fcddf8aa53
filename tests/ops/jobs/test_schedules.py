"""``rlm schedule`` create/list/pause/unpause/trigger/delete: a fire starts a run with a fresh id that
records its schedule; the launcher's history replays; ``rlm temporal setup`` is idempotent and names a
type conflict."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

from orchestrator.runs import RunRequest, run_summary
from orchestrator.schedules import (
    ScheduleError,
    ScheduleRequest,
    SearchAttributeConflict,
    create_schedule,
    list_schedules,
    setup_search_attributes,
)
from orchestrator.settings import Settings
from orchestrator.store import get_run, set_price
from orchestrator.workflow_runner import workflow_runner
from orchestrator.workflows import WORKFLOWS, Launcher
from tests.ops.jobs.cli import rlm

HISTORIES = Path(__file__).parent / "histories"
COUNT = "How many times does the word 'ERROR' appear? Use 3 chunks."


async def _one(history: WorkflowHistory) -> AsyncIterator[WorkflowHistory]:
    yield history


async def _replay(history: WorkflowHistory) -> dict[str, str]:
    replayer = Replayer(workflows=WORKFLOWS, workflow_runner=workflow_runner())
    results = await replayer.replay_workflows(_one(history), raise_on_replay_failure=False)
    return {wid: str(err) for wid, err in results.replay_failures.items()}


async def _listed(client: Client, name: str, present: bool) -> None:
    for _ in range(100):
        if (name in [r.name for r in await list_schedules(client)]) == present:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"schedule {name} never {'appeared' if present else 'went away'} in the list")


async def _first_fire(client: Client, name: str) -> str:
    for _ in range(150):
        desc = await client.get_schedule_handle(name).describe()
        actions = [a.action for a in desc.info.recent_actions]
        if actions and isinstance(actions[0], ScheduleActionExecutionStartWorkflow):
            return actions[0].workflow_id
        await asyncio.sleep(0.2)
    raise AssertionError(f"schedule {name} did not fire")


async def test_a_schedule_fires_through_trigger_and_its_run_records_the_schedule(
    cli_env: dict[str, str], client: Client, sessions: sessionmaker[Session], words: tuple[Path, int]
) -> None:
    path, expected = words
    name = f"nightly-{uuid.uuid4().hex[:6]}"
    create = [
        "schedule",
        "create",
        name,
        "--cron",
        "0 3 1 1 *",
        "--query",
        COUNT,
        "--context",
        str(path),
        "--model",
        "scripted/mapreduce",
        "--deadline",
        "300",
    ]
    made, bad_name = await asyncio.gather(
        rlm(cli_env, *create), rlm(cli_env, "schedule", "create", "no spaces", *create[3:])
    )
    assert made.code == 0, made.err
    assert made.out.strip() == f"schedule {name} created (0 3 1 1 *, tenant default)"
    assert bad_name.code == 1 and bad_name.err.startswith("error: schedule name 'no spaces' must be")
    await _listed(client, name, True)

    again, paused = await asyncio.gather(rlm(cli_env, *create), rlm(cli_env, "schedule", "pause", name))
    assert again.code == 1 and f"schedule '{name}' exists already" in again.err
    assert paused.code == 0 and paused.out.strip() == f"schedule {name} paused"
    listed = await rlm(cli_env, "schedule", "list", "--json")
    assert listed.code == 0, listed.err
    row = next(r for r in listed.json() if r["name"] == name)
    assert row["paused"] is True and row["cron"] == "0 3 1 1 *" and row["tenant"] == "default"
    assert row["query"] == COUNT and row["fires"] == 0 and row["next_fires"]

    unpaused = await rlm(cli_env, "schedule", "unpause", name)
    assert unpaused.code == 0, unpaused.err
    fired = await rlm(cli_env, "schedule", "trigger", name)
    assert fired.code == 0 and fired.out.strip() == f"schedule {name} triggered"

    launcher_id = await _first_fire(client, name)
    assert launcher_id.startswith(f"{name}-")
    launched = await asyncio.wait_for(client.get_workflow_handle_for(Launcher.run, launcher_id).result(), 120)
    run_id = launched.run_id
    assert (run_id, launched.status, launched.error) == (launcher_id, "completed", None)

    summary = run_summary(sessions, run_id)
    assert summary.status == "completed" and summary.answer == str(expected) and summary.nodes == 4
    with sessions() as s:
        assert get_run(s, run_id).config["schedule"] == name
    root = await client.get_workflow_handle(f"{run_id}/0").describe()
    assert root.parent_id == launcher_id
    memo = await root.memo()
    assert memo == {"schedule": name, "query": COUNT}

    waited = await rlm(cli_env, "wait", run_id, "--json")
    assert waited.code == 0 and waited.json()["answer"] == str(expected)

    history = await client.get_workflow_handle(launcher_id).fetch_history()
    assert await _replay(history) == {}
    record = os.environ.get("RLM_RECORD_LAUNCHER_HISTORY")
    if record:
        Path(record).write_text(history.to_json())

    deleted = await rlm(cli_env, "schedule", "delete", name)
    assert deleted.code == 0, deleted.err
    await _listed(client, name, False)
    gone = await rlm(cli_env, "schedule", "trigger", name)
    assert gone.code == 1 and gone.err.strip() == f"error: no schedule '{name}'; see `rlm schedule list`"


async def test_a_bad_cron_is_refused_with_the_servers_reason(
    client: Client, sessions: sessionmaker[Session], settings: Settings, words: tuple[Path, int]
) -> None:
    req = ScheduleRequest(f"badcron-{uuid.uuid4().hex[:6]}", "not a cron", RunRequest("q", words[0]))
    with pytest.raises(ScheduleError, match=r"Invalid schedule spec: CronString .*; check --cron$"):
        await create_schedule(client, sessions, req, settings.task_queue)


async def test_a_schedule_whose_runs_could_not_be_priced_is_refused(
    client: Client, sessions: sessionmaker[Session], settings: Settings, words: tuple[Path, int]
) -> None:
    model = f"acme/unpriced-{uuid.uuid4().hex[:6]}"
    name = f"unpriced-{uuid.uuid4().hex[:6]}"
    req = ScheduleRequest(name, "0 2 * * *", RunRequest("q", words[0], sub_model=model), paused=True)
    refused = rf"^no price known for model '{model}'; .*; every run of this schedule would fail at its first"
    with pytest.raises(ScheduleError, match=refused):
        await create_schedule(client, sessions, req, settings.task_queue, prices_file=settings.prices_file)
    with pytest.raises(RPCError) as missing:
        await client.get_schedule_handle(name).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND

    with sessions.begin() as s:
        set_price(s, model, Decimal("1e-7"), Decimal("2e-7"))
    await create_schedule(client, sessions, req, settings.task_queue, prices_file=settings.prices_file)
    try:
        await _listed(client, name, True)
    finally:
        await client.get_schedule_handle(name).delete()


async def test_recorded_launcher_history_replays() -> None:
    files = sorted(HISTORIES.glob("launcher*.json"))
    assert files, (
        "record it with: RLM_RECORD_LAUNCHER_HISTORY=tests/ops/jobs/histories/launcher.json "
        "pytest tests/ops/jobs -k fires_through_trigger"
    )
    for f in files:
        assert await _replay(WorkflowHistory.from_json(f"recorded/{f.stem}", f.read_text())) == {}


async def test_temporal_setup_is_idempotent_and_names_a_type_conflict(
    cli_env: dict[str, str], client: Client
) -> None:
    first = await rlm(cli_env, "temporal", "setup")
    second = await rlm(cli_env, "temporal", "setup")
    for done in (first, second):
        assert done.code == 0, done.err
        assert done.out.strip() == (
            "namespace default: added none; "
            "already registered RlmCost, RlmDepth, RlmRunId, RlmStatus, RlmTenant"
        )
    extra = f"RlmJobsTest{uuid.uuid4().hex[:6]}"
    added = await setup_search_attributes(client, "default", {extra: "Keyword"})
    assert added.added == [extra]
    again = await setup_search_attributes(client, "default", {extra: "Keyword"})
    assert again.added == [] and again.present == [extra]
    with pytest.raises(SearchAttributeConflict, match=r"RlmCost is registered as Double .* needs Keyword"):
        await setup_search_attributes(client, "default", {"RlmCost": "Keyword"})

    env = {k: v for k, v in cli_env.items() if k != "TEMPORAL_ADDRESS"}
    missing = await rlm(env, "temporal", "setup")
    assert missing.code == 1 and missing.err.startswith("error: set TEMPORAL_ADDRESS")
