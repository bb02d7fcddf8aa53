"""Workflows ended outside the engine (``temporal workflow terminate``) leave the store consistent.

A terminated sub-call runs no code to record its end: its parent records it ``aborted`` and goes on.
``rlm abort`` of a run whose root was terminated records every node the store still shows running as
``aborted``, the run too, and what they held goes back to the budgets. Before, such nodes and runs
stayed ``running`` in the store for good, and ``rlm wait`` of such a run never returned; now it asks
Temporal now and then and exits 8 (``stopped``) with what an operator can do.

Real dev server, store, Docker sandbox and an in-process worker; the model is scripted."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from pathlib import Path

from temporalio.service import RPCError

from orchestrator.control import abort, parse_target
from orchestrator.runs import ExitCode
from orchestrator.store import (
    create_run,
    create_tenant,
    get_run,
    get_tenant,
    list_nodes,
    list_steps,
    reserve,
    upsert_node,
)
from orchestrator.stuck import stuck
from orchestrator.vocabulary import FINAL_STATUSES, LeafMode, NodeKind, Status
from orchestrator.workflows import RLMNode
from orchestrator.workflows.types import Limits
from tests.ops.control.billing import assert_billed_once
from tests.ops.control.helpers import (
    RLM,
    eventually,
    first_leaf_calling,
    node_status,
    replay_all,
    rlm,
    rlm_json,
)
from tests.orchestrator.harness import Harness, word_context


async def test_abort_of_a_terminated_run_records_its_end_and_releases_its_holds(
    harness: Harness, rlm_env: dict[str, str], tmp_path: Path
) -> None:
    path, _ = word_context(tmp_path / "w.txt", 2_000)
    run_id = f"terminated-{uuid.uuid4().hex[:8]}"
    models = ("--model", "scripted/mapreduce", "--sub-model", "scripted/leaf?latency_ms=3000")
    query = "How many times does the word 'ERROR' appear? Use 4 chunks."
    proc = await asyncio.create_subprocess_exec(
        RLM, "run", query, "--context", str(path), "--run-id", run_id, *models, "--quiet",
        env=rlm_env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        handle = harness.client.get_workflow_handle(f"{run_id}/0")

        async def leaves_started() -> bool | None:
            if proc.returncode is not None:
                raise AssertionError(f"rlm run ended first: {(await proc.communicate())[1].decode()}")
            try:
                state = await handle.query(RLMNode.state)
            except RPCError:
                return None  # not started yet
            return True if state.children >= 4 else None

        await eventually(leaves_started, "the root's leaves", timeout_s=60)
        await handle.terminate("test: ended outside the engine")
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # `rlm run` says what happened and what to do, with no answer on stdout.
    assert proc.returncode == 1 and out == b"", err.decode()
    said = err.decode()
    assert "error: the root workflow failed" in said and "status running |" in said
    assert f"`rlm resume {run_id}` starts it again" in said and f"`rlm abort {run_id}` records" in said
    with harness.sessions() as s:
        assert get_run(s, run_id).status == Status.RUNNING  # nothing recorded the termination
    # `rlm stuck` points at it: nothing would ever end it.
    (listed,) = await stuck(harness.client, harness.sessions, idle_s=3600, attempts=99, run_id=run_id)
    assert listed.node_id == handle.id
    assert (
        "its workflow is terminated in Temporal" in listed.reason and f"rlm abort {run_id}" in listed.reason
    )
    other = f"other-{run_id}"
    with harness.sessions.begin() as s:
        create_tenant(s, other, Decimal(1))
    # Another tenant's view does not see it, even naming the run.
    mine = await stuck(harness.client, harness.sessions, idle_s=3600, attempts=9, run_id=run_id, tenant=other)
    assert mine == []
    # `rlm wait` does not wait for ever on it: it asks Temporal and says what an operator can do.
    code, out, err = await rlm(rlm_env, "wait", run_id, "--json", timeout_s=60)
    waited = json.loads(out)
    assert code == ExitCode.STOPPED and waited["outcome"] == "stopped", err
    assert waited["status"] == Status.RUNNING and "is terminated in Temporal" in waited["stopped_reason"]
    assert (
        f"rlm resume {run_id}" in waited["stopped_reason"]
        and f"rlm abort {run_id}" in waited["stopped_reason"]
    )
    # `rlm status` says the same at once.
    shown = await rlm_json(rlm_env, "status", run_id)
    assert (shown["status"], shown["stopped_reason"]) == (Status.RUNNING, waited["stopped_reason"])
    code, out, err = await rlm(rlm_env, "status", run_id)
    assert code == 0 and f"  stopped: {waited['stopped_reason']}" in out, err

    report = await rlm_json(rlm_env, "abort", run_id, "--wait", "30")

    assert report["still_running"] == []
    assert handle.id in report["settled"] and handle.id not in report["cancelled"]  # it had closed already
    with harness.sessions() as s:
        run = get_run(s, run_id)
        nodes = {n.node_id: n.status for n in list_nodes(s, run_id)}
        assert run.status == Status.ABORTED and run.reserved_nanos == 0
        assert all(status in FINAL_STATUSES for status in nodes.values()), nodes
        assert nodes[handle.id] == Status.ABORTED
    assert await stuck(harness.client, harness.sessions, idle_s=3600, attempts=99, run_id=run_id) == []
    code, out, err = await rlm(rlm_env, "wait", run_id)
    assert code == ExitCode.ABORTED and "aborted (exit 5: aborted)" in out, err


async def test_a_sub_call_terminated_in_temporal_is_recorded_aborted_by_its_parent(
    harness: Harness, tmp_path: Path
) -> None:
    handle, leaf, expected = await first_leaf_calling(harness, tmp_path, Limits(heartbeat_timeout_s=10))
    run_id = handle.id.rsplit("/", 1)[0]
    await harness.client.get_workflow_handle(leaf).terminate("test: ended outside the engine")

    out = await asyncio.wait_for(harness.finish(handle), 90)
    # The cell saw the sub-call fail; the model went on with other chunks and answered.
    assert out.result.status == Status.COMPLETED and out.summary.answer == str(expected)
    with harness.sessions() as s:
        nodes = {n.node_id: n for n in list_nodes(s, run_id)}
        assert get_run(s, run_id).reserved_nanos == 0
    assert all(n.status in FINAL_STATUSES for n in nodes.values()), nodes
    # Recorded aborted by the parent, unless the call the leaf had in flight then came back: it ran on
    # in the worker, was paid for, and recorded the leaf completed.
    terminated = nodes[leaf]
    if terminated.status == Status.ABORTED:
        assert "terminated in Temporal" in (terminated.error or "")
    else:
        assert terminated.status == Status.COMPLETED, terminated.status
    assert_billed_once(harness.sessions, run_id)  # every call paid once, nothing charged twice
    assert await replay_all(harness.client, [handle.id]) == {}


async def test_abort_of_an_ended_run_releases_the_holds_no_call_will_close(
    harness: Harness, rlm_env: dict[str, str]
) -> None:
    run_id = f"t-{uuid.uuid4().hex[:10]}"
    tenant = f"leak-{run_id}"
    with harness.sessions.begin() as s:
        create_tenant(s, tenant, Decimal(10))
        create_run(s, run_id, tenant=tenant, status=Status.COMPLETED)
    # What an earlier version leaked: a hold of a call that ended without settling or releasing it.
    key = f"{run_id}/0/1/gen"
    reserve(harness.sessions, run_id=run_id, tenant=tenant, amount=Decimal("0.25"), key=key)
    code, out, _ = await rlm(rlm_env, "status", run_id)
    assert code == 0 and f"`rlm abort {run_id}` releases" in out

    report = await rlm_json(rlm_env, "abort", run_id)

    assert (report["holds_released"], report["cancelled"], report["still_running"]) == (1, [], [])
    with harness.sessions() as s:
        run = get_run(s, run_id)
        assert (run.status, run.reserved_nanos, run.spent) == (Status.COMPLETED, 0, Decimal(0))
        assert get_tenant(s, tenant).reserved_nanos == 0
    code, out, _ = await rlm(rlm_env, "status", run_id)
    assert code == 0 and "still reserved" not in out


async def test_a_run_temporal_does_not_have_is_ended_only_with_include_missing(
    harness: Harness, rlm_env: dict[str, str]
) -> None:
    """Its history deleted, or the server's data lost: `abort` leaves it alone (it may run on the server
    another TEMPORAL_ADDRESS names) until the operator says `--include-missing`; then it ends, and what
    it held goes back to the budgets."""
    run_id = f"t-{uuid.uuid4().hex[:10]}"
    tenant = f"gone-{run_id}"
    root = f"{run_id}/0"
    with harness.sessions.begin() as s:
        create_tenant(s, tenant, Decimal(10))
        create_run(s, run_id, tenant=tenant, status=Status.RUNNING)
        upsert_node(s, root, run_id=run_id, kind=NodeKind.ROOT, depth=0, status=Status.RUNNING)
    reserve(harness.sessions, run_id=run_id, tenant=tenant, amount=Decimal("0.25"), key=f"{root}/1/gen")
    (listed,) = await stuck(harness.client, harness.sessions, idle_s=3600, attempts=99, run_id=run_id)
    assert f"Temporal has no workflow {root}" in listed.reason
    assert f"`rlm abort {run_id} --include-missing`" in listed.reason

    report = await rlm_json(rlm_env, "abort", run_id)

    assert (report["settled"], report["holds_released"]) == ([], 0)
    with harness.sessions() as s:
        assert get_run(s, run_id).status == Status.RUNNING and get_run(s, run_id).reserved_nanos > 0

    report = await rlm_json(rlm_env, "abort", run_id, "--include-missing")

    assert (report["settled"], report["cancelled"], report["still_running"]) == ([root], [], [])
    with harness.sessions() as s:
        run = get_run(s, run_id)
        assert (run.status, run.reserved_nanos) == (Status.ABORTED, 0)
        assert node_status(harness.sessions, root) == Status.ABORTED
        assert get_tenant(s, tenant).reserved_nanos == 0
    assert await stuck(harness.client, harness.sessions, idle_s=3600, attempts=99, run_id=run_id) == []


async def test_abort_of_an_inline_leaf_stops_its_call_and_its_running_parent_records_it(
    harness: Harness, tmp_path: Path
) -> None:
    """An inline leaf has no workflow to cancel: `abort` of it marks it, its worker stops its call (no
    charge), and its running parent records it aborted and goes on, as with a cancelled ``Leaf``."""
    limits = Limits(leaf_mode=LeafMode.INLINE, heartbeat_timeout_s=10)
    handle, leaf, _ = await first_leaf_calling(harness, tmp_path, limits)
    run_id = handle.id.rsplit("/", 1)[0]
    report = await abort(harness.client, harness.sessions, parse_target(leaf), wait_s=5)
    assert (report.cancelled, report.still_running, report.settled, report.holds_released) == ([], [], [], 0)

    out = await asyncio.wait_for(harness.finish(handle), 90)
    assert out.result.status == Status.COMPLETED
    assert node_status(harness.sessions, leaf) == Status.ABORTED
    with harness.sessions() as s:
        assert list_steps(s, leaf) == []  # its call never came back to be recorded
        assert get_run(s, run_id).reserved_nanos == 0
    assert_billed_once(harness.sessions, run_id)
