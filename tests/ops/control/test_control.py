"""``rlm pause``/``resume``/``abort``/``budget raise``/``stuck`` against the real dev server, store,
Docker engine and an in-process worker; every command with ``--json``."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import docker

from orchestrator.control import abort, parse_target
from orchestrator.store import create_tenant, get_run, get_tenant
from orchestrator.stuck import StuckNode, stuck
from orchestrator.workflows import RLMNode
from orchestrator.workflows.common import SA_STATUS
from orchestrator.workflows.types import Limits
from sandbox.docker_backend import containers
from tests.ops.control.billing import assert_billed_once
from tests.ops.control.helpers import (
    eventually,
    first_leaf_calling,
    node_status,
    replay_all,
    rlm,
    rlm_json,
    step_count,
    wait_status,
)
from tests.orchestrator.harness import Harness, word_context


async def test_pause_after_the_current_step_then_resume_finishes(
    harness: Harness, rlm_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "c.txt"
    path.write_text("z" * 777)
    handle = await harness.start(
        "What is the magic number?",
        path,
        # Long enough (~10 s) that `rlm pause`, a new process, reaches it while it runs.
        model="scripted/loop?latency_ms=700",
        limits=Limits(max_iterations=12, heartbeat_timeout_s=10),
    )
    run_id = handle.id.rsplit("/", 1)[0]

    async def started() -> bool | None:
        return True if step_count(harness.sessions, handle.id, "generate") >= 1 else None

    await eventually(started, "the first model call")
    paused = await rlm_json(rlm_env, "pause", run_id)
    assert paused == {"target": run_id, "paused": [handle.id]}

    await wait_status(harness.sessions, handle.id, "paused")
    state = await handle.query(RLMNode.state)
    assert state.status == "paused" and state.step == "paused"
    assert (await handle.describe()).typed_search_attributes.get(SA_STATUS) == "paused"
    before = step_count(harness.sessions, handle.id, "generate")
    await asyncio.sleep(1.5)
    assert step_count(harness.sessions, handle.id, "generate") == before  # held: no new step

    stuck = await rlm_json(rlm_env, "stuck", "--idle", "1s", "--run", run_id)
    assert [(s["node_id"], s["status"]) for s in stuck["stuck"]] == [(handle.id, "paused")]
    assert "paused: waiting for `rlm resume`" in stuck["stuck"][0]["reason"]
    code, _, err = await rlm(rlm_env, "stuck", "--idle", "soon", "--run", run_id)
    assert code == 1 and err.strip().splitlines()[-1].startswith("error: --idle: 'soon' is not a duration")
    # `rlm status` names the node an operator paused, as `rlm wait --json` does.
    assert (await rlm_json(rlm_env, "status", run_id))["paused_nodes"] == [handle.id]
    code, out, _ = await rlm(rlm_env, "status", run_id)
    assert code == 0 and f"paused by an operator: {handle.id} (`rlm resume {run_id}`" in out

    resumed = await rlm_json(rlm_env, "resume", run_id)
    assert resumed["signalled"] == [handle.id] and resumed["restarted"] is None
    out = await asyncio.wait_for(harness.finish(handle), 60)
    assert out.result.status == "completed"
    assert out.summary.answer == "I ran out of iterations. All I know: the context has 777 characters."
    assert step_count(harness.sessions, handle.id, "generate") == 13  # 12 iterations + the forced final
    assert await replay_all(harness.client, [handle.id]) == {}


async def test_budget_exhausted_pauses_raise_then_resume_spends_exactly_the_calls(
    harness: Harness, rlm_env: dict[str, str], tmp_path: Path
) -> None:
    path, expected = word_context(tmp_path / "w.txt", 1_500)
    handle = await harness.start(
        "How many times does the word 'ERROR' appear? Use 3 chunks.",
        path,
        model="scripted/mapreduce",
        budget_usd="0.001",
    )
    run_id = handle.id.rsplit("/", 1)[0]
    await wait_status(harness.sessions, handle.id, "paused_budget")

    raised = await rlm_json(rlm_env, "budget", "raise", "--run", run_id, "0.5")
    assert raised["scope"] == "run" and raised["name"] == run_id
    assert Decimal(raised["after"]) - Decimal(raised["before"]) == Decimal("0.5")
    assert raised["paused"] == [handle.id]
    resumed = await rlm_json(rlm_env, "resume", run_id)
    assert handle.id in resumed["signalled"]

    out = await asyncio.wait_for(harness.finish(handle), 60)
    assert out.result.status == "completed" and out.summary.answer == str(expected)
    spent = assert_billed_once(harness.sessions, run_id)
    assert Decimal(0) < spent <= Decimal("0.501")
    assert await replay_all(harness.client, [r.node_id for r in out.tree]) == {}


async def test_budget_raise_for_a_tenant_and_bad_input(harness: Harness, rlm_env: dict[str, str]) -> None:
    with harness.sessions.begin() as s:
        create_tenant(s, "acme-raise", Decimal("1.25"))
    raised = await rlm_json(rlm_env, "budget", "raise", "--tenant", "acme-raise", "2")
    assert (raised["before"], raised["after"]) == ("1.25", "3.25")
    with harness.sessions() as s:
        assert get_tenant(s, "acme-raise").budget == Decimal("3.25")

    code, _, err = await rlm(rlm_env, "budget", "raise", "--tenant", "nobody", "1")
    assert code == 1 and err.strip() == "error: no tenant 'nobody'; see them with `rlm tenant show`"
    code, _, err = await rlm(rlm_env, "budget", "raise", "--tenant", "acme-raise", "--run", "r", "1")
    assert code == 1 and "exactly one of --tenant T or --run R" in err
    code, _, err = await rlm(rlm_env, "pause", "run-x/0.a")
    assert code == 1 and "is not a node id" in err


async def test_abort_run_leaves_no_running_workflow_and_no_container(
    harness: Harness, rlm_env: dict[str, str], tmp_path: Path
) -> None:
    path, _ = word_context(tmp_path / "w.txt", 4_000)
    handle = await harness.start(
        "How many times does the word 'ERROR' appear?",
        path,
        model="scripted/recurse",
        sub_model="scripted/recurse?latency_ms=3000",
        limits=Limits(max_depth=2, heartbeat_timeout_s=10),
    )
    run_id = handle.id.rsplit("/", 1)[0]
    engine = docker.from_env()

    async def children_running() -> bool | None:
        state = await handle.query(RLMNode.state)
        return True if state.children >= 2 else None

    await eventually(children_running, "the root's rlm_query children")
    assert containers(engine, {"run": run_id})  # the root's sandbox at least

    report = await rlm_json(rlm_env, "abort", run_id)
    assert report["still_running"] == []
    assert handle.id in report["cancelled"]

    ids = [w.id async for w in harness.client.list_workflows(f'RlmRunId = "{run_id}"')]
    assert handle.id in ids
    for wid in ids:
        desc = await harness.client.get_workflow_handle(wid).describe()
        assert desc.status is not None and desc.status.name != "RUNNING", wid
    assert containers(engine, {"run": run_id}) == []
    assert node_status(harness.sessions, handle.id) == "aborted"
    with harness.sessions() as s:
        assert get_run(s, run_id).status == "aborted"

    async def attribute_aborted() -> bool | None:
        desc = await handle.describe()
        return True if desc.typed_search_attributes.get(SA_STATUS) == "aborted" else None

    await eventually(attribute_aborted, "RlmStatus aborted")
    assert await replay_all(harness.client, ids) == {}


async def test_stuck_lists_an_activity_retrying_past_the_attempt_count(
    harness: Harness, tmp_path: Path
) -> None:
    path = tmp_path / "c.txt"
    path.write_text("the magic number is 31337")
    handle = await harness.start(
        "What is the magic number?", path, model="scripted/flaky?fail=server&times=3&then=search"
    )
    run_id = handle.id.rsplit("/", 1)[0]

    async def retrying() -> list[StuckNode] | None:
        found = await stuck(harness.client, harness.sessions, idle_s=3600, attempts=3, run_id=run_id)
        return found or None

    (node,) = await eventually(retrying, "the model call's third attempt", timeout_s=30)
    assert node.node_id == handle.id and node.run_id == run_id
    assert node.reason.startswith("activity generate on attempt 3: model call failed (server)")
    out = await asyncio.wait_for(harness.finish(handle), 60)
    assert out.summary.answer == "31337"
    assert await stuck(harness.client, harness.sessions, idle_s=3600, attempts=3, run_id=run_id) == []


async def test_abort_of_one_node_fails_that_sub_call_and_the_parent_goes_on(
    harness: Harness, rlm_env: dict[str, str], tmp_path: Path
) -> None:
    handle, leaf, expected = await first_leaf_calling(harness, tmp_path)
    report = await abort(harness.client, harness.sessions, parse_target(leaf))
    assert report.cancelled == [leaf] and report.still_running == []

    out = await asyncio.wait_for(harness.finish(handle), 90)
    assert node_status(harness.sessions, leaf) == "aborted"
    # The cell saw the sub-call fail; the model retried with other chunks and answered.
    assert out.result.status == "completed" and out.summary.answer == str(expected)
    state = await handle.query(RLMNode.state)
    assert state.last_error is not None
    assert await replay_all(harness.client, [r.node_id for r in out.tree]) == {}
