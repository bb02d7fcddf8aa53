"""``rlm submit`` is idempotent by run id (store and Temporal); ``rlm wait`` exits with each documented code;
``--json`` on the read commands."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from orchestrator.runs import ExitCode, RunRecord, RunRequest, register_run, submit_run, wait_outcome
from orchestrator.settings import Settings
from orchestrator.store import get_node, get_run, put_blob, put_text
from orchestrator.workflows import RLMNode
from orchestrator.workflows.types import Limits
from tests.ops.jobs.cli import rlm
from tests.orchestrator.harness import Harness

COUNT = "How many times does the word 'ERROR' appear? Use 4 chunks."


async def _workflows(client: Client, workflow_id: str) -> int:
    return len([w async for w in client.list_workflows(f'WorkflowId = "{workflow_id}"')])


async def _until_status(sessions: sessionmaker[Session], node_id: str, status: str) -> None:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        with sessions() as s:
            if get_node(s, node_id).status == status:
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{node_id} never reached {status}")


async def test_submit_detach_then_wait_then_resubmit_reports_the_same_run(
    cli_env: dict[str, str], words: tuple[Path, int], client: Client
) -> None:
    path, expected = words
    run_id = f"sub-{uuid.uuid4().hex[:8]}"
    submit = [
        "submit",
        COUNT,
        "--context",
        str(path),
        "--model",
        "scripted/mapreduce",
        "--run-id",
        run_id,
        "--detach",
    ]

    first = await rlm(cli_env, *submit)
    assert first.code == 0, first.err
    assert first.out.strip() == run_id and f"run {run_id} started" in first.err

    waited = await rlm(cli_env, "wait", run_id, "--json")
    assert waited.code == 0, waited.err
    doc = waited.json()
    assert doc["status"] == "completed" and doc["exit_code"] == 0 and doc["outcome"] == "answered"
    assert doc["answer"] == str(expected) and doc["nodes"] == 5

    again, status, tree, text = await asyncio.gather(
        rlm(cli_env, *submit, "--json"),
        rlm(cli_env, "status", run_id, "--json"),
        rlm(cli_env, "tree", run_id, "--json"),
        rlm(cli_env, "wait", run_id),
    )
    assert again.code == 0, again.err
    assert again.json() == {"run_id": run_id, "started": False, "status": "completed"}
    assert "exists already (completed); not started again" in again.err
    assert await _workflows(client, f"{run_id}/0") == 1

    assert status.code == 0, status.err
    s = status.json()
    assert s["run_id"] == run_id and s["status"] == "completed" and s["answer"] == str(expected)
    assert s["nodes"] == 5 and Decimal(s["cost_usd"]) > 0 and s["paused_nodes"] == []

    assert tree.code == 0, tree.err
    rows = tree.json()
    assert [r["node_id"] for r in rows] == [f"{run_id}/0"] + [f"{run_id}/0.{i}" for i in range(1, 5)]
    assert rows[0]["kind"] == "root" and rows[0]["parent_id"] is None
    assert all(r["status"] == "completed" for r in rows)
    assert sum(Decimal(r["cost"]) for r in rows) == Decimal(s["cost_usd"])

    assert text.code == 0 and f"run {run_id}: completed (exit 0: answered)" in text.out
    assert f"answer: {expected}" in text.out


async def test_submit_twice_while_running_starts_one_workflow(
    client: Client, sessions: sessionmaker[Session], settings: Settings, words: tuple[Path, int], worker: None
) -> None:
    path, expected = words
    req = RunRequest(
        COUNT,
        path,
        model="scripted/mapreduce",
        sub_model="scripted/leaf?latency_ms=200",
        run_id=f"twice-{uuid.uuid4().hex[:8]}",
    )
    first = await submit_run(client, sessions, req, settings.task_queue)
    # A different query under the same id: the first submission wins, nothing new starts.
    second = await submit_run(client, sessions, replace(req, query="something else"), settings.task_queue)
    assert first.started and first.status == "running"
    assert not second.started and second.status == "running"
    result = await asyncio.wait_for(
        client.get_workflow_handle_for(RLMNode.run, f"{req.run_id}/0").result(), 120
    )
    assert result.answer is not None and result.answer.inline == str(expected)
    assert await _workflows(client, f"{req.run_id}/0") == 1


async def test_submit_starts_a_run_whose_store_record_exists_without_a_workflow(
    client: Client, sessions: sessionmaker[Session], settings: Settings, words: tuple[Path, int], worker: None
) -> None:
    # A submission that died between the store write and the workflow start: the next one completes it,
    # with what the first registered (its deadline and models), not with the new request.
    path, expected = words
    run_id = f"half-{uuid.uuid4().hex[:8]}"
    deadline = time.time() + 300
    with sessions.begin() as s:
        rec = RunRecord(
            run_id,
            "default",
            put_text(s, COUNT),
            put_blob(s, path.read_bytes()),
            ".txt",
            "scripted/mapreduce",
            "scripted/leaf",
            Limits(),
            deadline,
        )
        _, created = register_run(s, rec)
    assert created
    req = RunRequest("ignored", path, model="scripted/loop", run_id=run_id, deadline_s=5)
    done = await submit_run(client, sessions, req, settings.task_queue)
    assert done.started
    result = await asyncio.wait_for(client.get_workflow_handle_for(RLMNode.run, f"{run_id}/0").result(), 120)
    assert result.answer is not None and result.answer.inline == str(expected)
    with sessions() as s:
        run = get_run(s, run_id)
        assert run.deadline is not None and abs(run.deadline.timestamp() - deadline) < 1
        assert run.config["model"] == "scripted/mapreduce"


async def test_wait_exit_codes(
    harness: Harness, cli_env: dict[str, str], sessions: sessionmaker[Session], words: tuple[Path, int]
) -> None:
    path, _ = words
    failed = await harness.run("What is the magic number?", path, model="scripted/fail_auth")
    timed_out = await harness.run(
        "What is the magic number?", path, model="scripted/partial?latency_ms=300", deadline_s=4.0
    )
    assert (failed.summary.status, timed_out.summary.status) == ("failed", "timed_out")
    paused = await harness.start("What is the magic number?", path, model="scripted/search", budget_usd="0")
    aborted = await harness.start("What is the magic number?", path, model="scripted/search", budget_usd="0")
    for handle in (paused, aborted):
        await _until_status(sessions, handle.id, "paused_budget")
    await aborted.signal(RLMNode.abort)
    assert (await aborted.result()).status == "aborted"
    # Registered in the store but never started: the store says running for ever.
    pending = f"pending-{uuid.uuid4().hex[:8]}"
    with sessions.begin() as s:
        query, context = put_text(s, "q"), put_blob(s, b"c")
        rec = RunRecord(pending, "default", query, context, ".txt", "m", "m", Limits(), time.time() + 60)
        register_run(s, rec)

    def run_of(workflow_id: str) -> str:
        return workflow_id.rsplit("/", 1)[0]

    try:
        results = await asyncio.gather(
            rlm(cli_env, "wait", failed.run_id),
            rlm(cli_env, "wait", run_of(paused.id), "--json"),
            rlm(cli_env, "wait", timed_out.run_id),
            rlm(cli_env, "wait", run_of(aborted.id)),
            rlm(cli_env, "wait", pending, "--timeout", "1"),
            rlm(cli_env, "wait", "no-such-run"),
            rlm(cli_env, "wait", pending, "--timeout", "-1"),
        )
    finally:
        await paused.signal(RLMNode.abort)
    codes = [r.code for r in results]
    assert codes == [
        ExitCode.FAILED,
        ExitCode.PAUSED,
        ExitCode.DEADLINE,
        ExitCode.ABORTED,
        ExitCode.STILL_RUNNING,
        ExitCode.USAGE,
        ExitCode.USAGE,
    ], [(r.code, r.err) for r in results]
    fail, pause, deadline, abort, still, unknown, bad = results
    assert "failed (exit 2: failed)" in fail.out and "reason: " in fail.out
    doc = pause.json()
    assert doc["exit_code"] == 3 and doc["paused_nodes"] == [paused.id] and doc["status"] == "paused_budget"
    assert "timed_out (exit 4: deadline)" in deadline.out
    assert "aborted (exit 5: aborted)" in abort.out
    assert f"run {pending}: running (exit 6: still_running)" in still.out
    assert unknown.err.startswith("error: ") and "no-such-run" in unknown.err
    assert bad.err.strip() == "error: --timeout -1.0 must be >= 0 seconds"
    # The in-process mapping agrees.
    outcome = wait_outcome(sessions, failed.run_id)
    assert outcome is not None and outcome.code == ExitCode.FAILED
    assert wait_outcome(sessions, pending) is None


async def test_submit_without_a_long_lived_server_is_a_clear_error(
    cli_env: dict[str, str], words: tuple[Path, int]
) -> None:
    env = {k: v for k, v in cli_env.items() if k != "TEMPORAL_ADDRESS"}
    done = await rlm(env, "submit", "q", "--context", str(words[0]), "--run-id", "x", "--detach")
    assert done.code == 1
    assert done.err.strip().splitlines()[-1].startswith("error: set TEMPORAL_ADDRESS to a Temporal server")
    assert "rlm dev" in done.err


async def test_read_commands_of_the_store_print_json(cli_env: dict[str, str]) -> None:
    tenant = f"acme-{uuid.uuid4().hex[:6]}"
    model = f"acme/model-{uuid.uuid4().hex[:6]}"
    created, priced = await asyncio.gather(
        rlm(cli_env, "tenant", "create", tenant, "--budget-usd", "12.5"),
        rlm(cli_env, "price", "set", model, "--input", "2.5e-7", "--output", "2e-6"),
    )
    assert created.code == 0 and priced.code == 0, created.err + priced.err
    one, every, price = await asyncio.gather(
        rlm(cli_env, "tenant", "show", tenant, "--json"),
        rlm(cli_env, "tenant", "show", "--json"),
        rlm(cli_env, "price", "show", model, "--json"),
    )
    assert one.code == 0, one.err
    assert one.json() == {
        "name": tenant,
        "limit_usd": "12.5",
        "spent_usd": "0",
        "reserved_usd": "0",
        "remaining_usd": "12.5",
    }
    assert every.code == 0 and tenant in [t["name"] for t in every.json()]
    assert price.code == 0, price.err
    assert price.json() == {
        "model": model,
        "input_usd_per_token": "0.00000025",
        "output_usd_per_token": "0.000002",
        "source": "registered",
    }


async def test_leaf_mode_from_the_flag_or_rlm_leaf_mode_is_kept_with_the_run(
    cli_env: dict[str, str], words: tuple[Path, int], sessions: sessionmaker[Session]
) -> None:
    path, expected = words
    base = ["submit", COUNT, "--context", str(path), "--model", "scripted/mapreduce", "--detach"]
    flagged, from_env = f"flag-{uuid.uuid4().hex[:8]}", f"env-{uuid.uuid4().hex[:8]}"

    started = await asyncio.gather(
        rlm(cli_env, *base, "--run-id", flagged, "--leaf-mode", "inline"),
        rlm({**cli_env, "RLM_LEAF_MODE": "inline"}, *base, "--run-id", from_env),
    )
    assert [s.code for s in started] == [0, 0], [s.err for s in started]
    for run_id in (flagged, from_env):
        waited = await rlm(cli_env, "wait", run_id, "--json")
        assert waited.code == 0 and waited.json()["answer"] == str(expected), waited.err
        with sessions() as s:
            assert get_run(s, run_id).config["limits"]["leaf_mode"] == "inline"

    bad = await rlm(cli_env, *base, "--run-id", "bad-mode", "--leaf-mode", "sideways")
    assert (
        bad.code == 1
        and bad.err.strip() == "error: --leaf-mode 'sideways' is not known; use auto, workflow or inline"
    )
    env_bad = await rlm({**cli_env, "RLM_LEAF_MODE": "sideways"}, *base, "--run-id", "bad-env")
    assert env_bad.code == 1 and "RLM_LEAF_MODE='sideways' is not known" in env_bad.err
