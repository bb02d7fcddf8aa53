"""One start path: ``rlm run``, ``rlm submit`` and a schedule's fire store the same run for the same
request, and a ``.json`` context stays JSON however the run is started, also when its root is started
again from what the store holds."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow

from orchestrator.runs import RunRequest, prepare_run, root_input, run_summary
from orchestrator.store import get_run
from orchestrator.workflows import Launcher
from orchestrator.workflows.types import NodeInput
from tests.ops.jobs.cli import rlm

# The scripted `code` model runs the query as its first cell: the answer is the type of `context`.
QUERY = "FINAL(type(context).__name__)"
OPTIONS = [
    *("--model", "scripted/code", "--max-iterations", "4", "--max-tokens", "512", "--deadline", "300"),
    *("--compact-at", "0.7", "--context-window", "9000"),
]


@pytest.fixture
def json_context(tmp_path: Path) -> Path:
    path = tmp_path / "records.json"
    path.write_text(json.dumps({"records": [{"id": 1, "level": "ERROR"}, {"id": 2, "level": "INFO"}]}))
    return path


def _stored(sessions: sessionmaker[Session], run_id: str) -> tuple[dict[str, Any], NodeInput]:
    with sessions() as s:
        run = get_run(s, run_id)
        return dict(run.config), root_input(run, "default")


async def _fired_run(client: Client, name: str) -> str:
    for _ in range(150):
        desc = await client.get_schedule_handle(name).describe()
        actions = [a.action for a in desc.info.recent_actions]
        if actions and isinstance(actions[0], ScheduleActionExecutionStartWorkflow):
            return actions[0].workflow_id  # the launcher's id is the fire's run id
        await asyncio.sleep(0.2)
    raise AssertionError(f"schedule {name} did not fire")


async def test_run_submit_and_a_schedule_store_the_same_run(
    cli_env: dict[str, str], client: Client, sessions: sessionmaker[Session], json_context: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    by_run, by_submit, schedule = f"same-run-{tag}", f"same-submit-{tag}", f"same-{tag}"
    common = [QUERY, "--context", str(json_context), *OPTIONS]
    ran, submitted, created = await asyncio.gather(
        rlm(cli_env, "run", *common, "--run-id", by_run, "--no-worker"),
        rlm(cli_env, "submit", *common, "--run-id", by_submit),
        rlm(cli_env, "schedule", "create", schedule, "--cron", "0 3 1 1 *", "--query", *common),
    )
    assert (ran.code, submitted.code, created.code) == (0, 0, 0), (ran.err, submitted.err, created.err)
    assert ran.out == "dict\n"
    try:
        fired = await rlm(cli_env, "schedule", "trigger", schedule)
        assert fired.code == 0, fired.err
        by_schedule = await _fired_run(client, schedule)
        launched = client.get_workflow_handle_for(Launcher.run, by_schedule).result()
        assert (await asyncio.wait_for(launched, 120)).status == "completed"
    finally:
        await rlm(cli_env, "schedule", "delete", schedule)

    stored = {run_id: _stored(sessions, run_id) for run_id in (by_run, by_submit, by_schedule)}
    assert stored[by_schedule][0].pop("schedule") == schedule
    configs = [config for config, _ in stored.values()]
    assert configs[0]["context_suffix"] == ".json"
    assert configs[0] == configs[1] == configs[2]
    roots = [root for _, root in stored.values()]
    assert len({(r.context, r.context_suffix, r.query, r.model, r.run.limits) for r in roots}) == 1
    assert (roots[0].run.limits.compact_at, roots[0].run.limits.context_window) == (0.7, 9000)
    for run_id in stored:
        assert run_summary(sessions, run_id).answer == "dict", run_id


async def test_a_json_context_registered_by_rlm_run_comes_back_as_json_from_the_store(
    cli_env: dict[str, str], sessions: sessionmaker[Session], json_context: Path, tmp_path: Path
) -> None:
    # `rlm run` registered the run and died before its root started; submitting the run id starts the
    # root from what the store holds (the first registration wins over the new request's text file).
    run_id = f"json-{uuid.uuid4().hex[:8]}"
    registered = prepare_run(
        sessions,
        RunRequest(QUERY, json_context, model="scripted/code", run_id=run_id, deadline_s=300),
        fresh=True,
    )
    assert registered.created and registered.root.context_suffix == ".json"
    text = tmp_path / "other.txt"
    text.write_text("not the stored context")

    done = await rlm(cli_env, "submit", QUERY, "--context", str(text), "--run-id", run_id, "--json")

    assert done.code == 0, done.err
    assert done.json()["answer"] == "dict"
    assert _stored(sessions, run_id)[1].context_suffix == ".json"
