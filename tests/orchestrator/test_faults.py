"""Workers killed with SIGKILL mid-run; the next worker finishes the run with the exact answer and
billing, and a live worker's sweep removes the killed worker's sandboxes once its lease lapses."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType

import sandbox
from orchestrator.settings import Settings
from orchestrator.store import get_run, ledger_sums, list_nodes, list_steps
from orchestrator.store.models import LedgerEntry
from orchestrator.vocabulary import LeafMode
from orchestrator.workflows.types import Limits
from tests.conftest import LEAF_MECHANISMS
from tests.orchestrator.harness import Harness, Outcome, word_context
from tests.orchestrator.workers import WorkerProcess, run_containers

QUERY = "How many times does the word 'ERROR' appear?"
MODEL = "scripted/mapreduce?chunks=40"
SUB_MODEL = "scripted/leaf?latency_ms=400"
# Short leases (2 s, renewed every 0.7 s, swept every 4 s): a killed worker's sandboxes go within seconds.
WORKER_ENV = {"RLM_HEARTBEAT_TIMEOUT_S": "2"}
KILL_TRIALS = 10


def limits(leaf_mode: str) -> Limits:
    return Limits(max_concurrency=4, heartbeat_timeout_s=5, leaf_mode=leaf_mode)


@pytest.fixture
def workers(other_queue: Settings, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()


def check_billing(harness: Harness, out: Outcome, expected_spent: Decimal | None = None) -> None:
    """Every call paid once: one settlement per reservation key, one per leaf, nothing left reserved."""
    leaves = [r for r in out.tree if r.kind == "leaf"]
    with harness.sessions() as s:
        entries = list(s.scalars(select(LedgerEntry).where(LedgerEntry.run_id == out.run_id)))
        by_reservation = {e.reservation_id: e for e in entries if e.kind == "reserve"}
        settled = Counter(
            by_reservation[e.reservation_id].idempotency_key for e in entries if e.kind == "settle"
        )
        leaf_steps = {r.node_id: len(list_steps(s, r.node_id)) for r in leaves}
        run = get_run(s, out.run_id)
        sums = ledger_sums(s, run_id=out.run_id)
    leaf_keys = {f"{r.node_id}/leaf" for r in leaves}
    assert {k: settled[k] for k in leaf_keys} == dict.fromkeys(leaf_keys, 1)
    assert all(count == 1 for count in settled.values()), settled
    assert leaf_steps == {r.node_id: 1 for r in leaves}
    assert (run.spent, run.reserved) == (sums.spent, sums.reserved) == (out.summary.cost, Decimal(0))
    if expected_spent is not None:
        assert run.spent == expected_spent


async def wait_swept(killed: WorkerProcess, run_id: str, timeout_s: float = 60.0) -> None:
    """Until no sandbox of ``run_id`` started by the killed worker is left (running or exited)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [c for c in run_containers(run_id) if c["durable-rlm.worker"].startswith(killed.worker_prefix)]
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the killed worker's containers of {run_id} were never swept: {left}")
        await asyncio.sleep(0.5)


@pytest.mark.parametrize("leaf_mode", LEAF_MECHANISMS)
async def test_sigkilled_worker_mid_subcalls_then_new_worker_finishes_without_double_billing(
    harness: Harness, other_queue: Settings, workers: list[WorkerProcess], tmp_path: Path, leaf_mode: str
) -> None:
    path, expected = word_context(tmp_path / "w.txt", 8_000)
    workers.append(WorkerProcess(other_queue, tmp_path / "worker1.log", WORKER_ENV))
    handle = await harness.start(
        QUERY,
        path,
        model=MODEL,
        sub_model=SUB_MODEL,
        limits=limits(leaf_mode),
        task_queue=other_queue.task_queue,
    )
    run_id = handle.id.rsplit("/", 1)[0]

    # Kill once some sub-calls completed and others are in flight.
    await harness.leaves_completed(run_id, 8)
    workers[0].kill()
    with harness.sessions() as s:
        completed_before_kill = {n.node_id for n in list_nodes(s, run_id) if n.status == "completed"}
    assert 8 <= len(completed_before_kill) < 40
    # The killed worker's sandbox is still there (running or exited) until a live worker sweeps it.
    assert any(c["durable-rlm.worker"].startswith(workers[0].worker_prefix) for c in run_containers(run_id))

    workers.append(WorkerProcess(other_queue, tmp_path / "worker2.log", WORKER_ENV))
    out = await asyncio.wait_for(harness.finish(handle), timeout=240)

    assert out.result.status == "completed", out.result.error
    assert out.summary.answer == str(expected)
    leaves = [r for r in out.tree if r.kind == "leaf"]
    assert len(leaves) == 40 and all(r.status == "completed" for r in leaves)
    check_billing(harness, out)
    await wait_swept(workers[0], run_id)
    sandbox.reap(labels={"run": run_id})


async def test_a_worker_killed_mid_generate_is_replaced_at_the_heartbeat_timeout(
    harness: Harness, other_queue: Settings, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    """The root's model call takes 4 s and its worker is SIGKILLed a second into it. The call
    heartbeats, so Temporal retries it on the next worker once the heartbeat timeout (3 s) passes, not
    at its 10-minute start-to-close timeout (the test would time out); the retry reuses the dead
    attempt's reservation, so the call is paid once."""
    path, expected = word_context(tmp_path / "w.txt", 2_000)
    workers.append(WorkerProcess(other_queue, tmp_path / "worker1.log", WORKER_ENV))
    handle = await harness.start(
        QUERY,
        path,
        model="scripted/mapreduce?chunks=2&latency_ms=4000",
        limits=Limits(heartbeat_timeout_s=3, leaf_mode=LeafMode.INLINE),
        task_queue=other_queue.task_queue,
    )
    run_id = handle.id.rsplit("/", 1)[0]
    first_call = f"{handle.id}/1/generate"
    for _ in range(600):
        with harness.sessions() as s:
            held = s.scalars(select(LedgerEntry.idempotency_key).where(LedgerEntry.run_id == run_id)).all()
        if first_call in held:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the root's first model call never started")
    await asyncio.sleep(1.0)
    workers[0].kill()

    workers.append(WorkerProcess(other_queue, tmp_path / "worker2.log", WORKER_ENV))
    out = await asyncio.wait_for(harness.finish(handle), timeout=120)

    assert out.result.status == "completed", out.result.error
    assert out.summary.answer == str(expected)
    attempts = [
        e.activity_task_started_event_attributes.attempt
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert 2 in attempts, "the killed call was never retried"
    check_billing(harness, out)
    await wait_swept(workers[0], run_id)
    sandbox.reap(labels={"run": run_id})


@pytest.mark.slow
async def test_workers_killed_at_random_moments(
    harness: Harness, other_queue: Settings, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    """KILL_TRIALS runs, alternating leaf modes; in each the serving worker is SIGKILLed at a random
    moment and a new one takes over (and is killed in the next trial). Each run must end with the exact
    answer and exactly the spend of an undisturbed run; afterwards no sandbox of any run is left."""
    seed = int(os.environ.get("RLM_FAULT_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    path, expected = word_context(tmp_path / "w.txt", 8_000)
    reference: dict[str, Decimal] = {}
    for mode in LEAF_MECHANISMS:  # undisturbed, on the session's worker
        ref = await harness.run(QUERY, path, model=MODEL, sub_model=SUB_MODEL, limits=limits(mode))
        assert ref.summary.answer == str(expected)
        reference[mode] = ref.summary.cost
        sandbox.reap(labels={"run": ref.run_id})

    current = WorkerProcess(other_queue, tmp_path / "worker0.log", WORKER_ENV)
    workers.append(current)
    current.wait_serving()
    run_ids: list[str] = []
    mid_run = left_behind = 0
    for trial in range(KILL_TRIALS):
        mode = LEAF_MECHANISMS[trial % len(LEAF_MECHANISMS)]
        delay = rng.uniform(0.0, 5.0)  # an undisturbed run takes about 6 s
        about = f"seed {seed} (RLM_FAULT_SEED), trial {trial}, {mode} leaves, killed after {delay:.2f} s"
        handle = await harness.start(
            QUERY,
            path,
            model=MODEL,
            sub_model=SUB_MODEL,
            limits=limits(mode),
            task_queue=other_queue.task_queue,
        )
        run_ids.append(handle.id.rsplit("/", 1)[0])
        await asyncio.sleep(delay)
        killed = current
        killed.kill()
        with harness.sessions() as s:
            mid_run += get_run(s, run_ids[-1]).status == "running"
        left_behind += any(
            c["durable-rlm.worker"].startswith(killed.worker_prefix) for c in run_containers(run_ids[-1])
        )
        current = WorkerProcess(other_queue, tmp_path / f"worker{trial + 1}.log", WORKER_ENV)
        workers.append(current)
        out = await asyncio.wait_for(harness.finish(handle), timeout=240)
        assert out.result.status == "completed", f"{about}: {out.result.error}"
        assert out.summary.answer == str(expected), about
        check_billing(harness, out, reference[mode])
        await wait_swept(killed, out.run_id)
        current.wait_serving()

    print(f"seed {seed}: {mid_run} of {KILL_TRIALS} kills mid-run, {left_behind} left sandboxes to sweep")
    assert mid_run >= KILL_TRIALS // 2, "most kills must land while the run is running"
    current.stop()  # its own sandboxes go with it; every other worker's went by release or sweep
    assert {run_id: run_containers(run_id) for run_id in run_ids} == {run_id: [] for run_id in run_ids}
