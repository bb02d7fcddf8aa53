"""Worker leases and sweeps (only dead workers' sandboxes go), and a worker that always stops: within 10 s
of SIGTERM or SIGINT whatever is in flight, leaving the work to the next worker."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import docker
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus

import sandbox
from orchestrator.settings import Settings
from orchestrator.store import create_tenant, list_nodes, live_workers, renew_lease, store_scope
from orchestrator.store.models import LedgerEntry, utcnow
from orchestrator.worker import (
    SandboxUnavailable,
    WorkerOptions,
    WorkerStopping,
    _FencedSessions,
    running_worker,
)
from orchestrator.workflows.types import Limits
from sandbox import imagebuild
from sandbox.docker_backend import CREATED_AT, MARKER, MARKER_VALUE, containers
from tests.orchestrator.harness import Harness, word_context
from tests.orchestrator.workers import OPENAI_MODEL, WorkerProcess, closed_port, leaf_endpoint, run_containers

STOP_BOUND_S = 10.0


def _containers(**labels: str) -> dict[str, str]:
    """Worker label by container id, of the sandbox containers with ``labels`` (pooled ones included)."""
    client = docker.from_env()
    try:
        found = containers(client, labels)
        return {c.id or "": (c.attrs.get("Labels") or {}).get(f"{MARKER}.worker", "") for c in found}
    finally:
        client.close()


@pytest.fixture
def tag() -> Iterator[str]:
    value = f"lifecycle-{uuid.uuid4().hex[:10]}"
    yield value
    sandbox.reap(labels={"run": value})


def _old_container(image: str, tag: str, **labels: str) -> str:
    """A container as a worker left it two hours ago (an engine-wide "older than an hour" sweep's prey)."""
    created = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat(timespec="seconds")
    full = {MARKER: MARKER_VALUE, f"{MARKER}.run": tag, CREATED_AT: created}
    full.update({f"{MARKER}.{key}": value for key, value in labels.items()})
    client = docker.from_env()
    try:
        return client.containers.create(image, command=["sleep", "600"], labels=full).id or ""
    finally:
        client.close()


async def test_a_worker_sweeps_dead_workers_sandboxes_and_spares_live_ones_then_removes_its_own(
    client: Client,
    harness: Harness,
    other_queue: Settings,
    sessions: sessionmaker[Session],
    sandbox_image: str,
    tag: str,
    tmp_path: Path,
) -> None:
    scope = store_scope(other_queue.database_url)
    with sessions.begin() as s:
        renew_lease(s, "w-alive", host="elsewhere", ttl_s=3600)
        renew_lease(s, "w-dead", host="elsewhere", ttl_s=1, now=utcnow() - dt.timedelta(minutes=5))
    alive = _old_container(sandbox_image, tag, worker="w-alive", store=scope)
    dead = _old_container(sandbox_image, tag, worker="w-dead", store=scope)
    never_leased = _old_container(sandbox_image, tag, worker="w-never", store=scope)
    other_store = _old_container(sandbox_image, tag, worker="w-dead", store="another-store")
    no_worker = _old_container(sandbox_image, tag)

    worker_id = f"lifecycle-{uuid.uuid4().hex[:6]}"
    async with running_worker(client, other_queue, WorkerOptions(lease_ttl_s=1.0), worker_id=worker_id):
        with sessions() as s:
            assert worker_id in live_workers(s)
        for _ in range(150):
            left = _containers(run=tag)
            if dead not in left and never_leased not in left:
                break
            await asyncio.sleep(0.1)
        assert set(left) == {alive, other_store, no_worker}

        # A cell waiting on slow sub-calls when the worker stops: its container goes with the worker.
        path, _ = word_context(tmp_path / "c.txt", 2_000)
        handle = await harness.start(
            "How many times does the word 'ERROR' appear? Use 20 chunks.",
            path,
            model="scripted/mapreduce",
            sub_model="scripted/leaf?latency_ms=500",
            limits=Limits(max_concurrency=1, heartbeat_timeout_s=10),
            task_queue=other_queue.task_queue,
        )
        run_id = handle.id.rsplit("/", 1)[0]
        for _ in range(300):
            labels = run_containers(run_id)
            if labels:
                break
            await asyncio.sleep(0.1)
        assert [(c[f"{MARKER}.worker"], c[f"{MARKER}.store"]) for c in labels] == [(worker_id, scope)]
        # One this worker holds no session of (as a cell stuck past the stop bound leaves it).
        stray = _old_container(sandbox_image, tag, worker=worker_id, store=scope)
        await asyncio.sleep(2.5)  # a sweep or two: its own containers are not swept
        assert stray in _containers(run=tag)

    assert _containers(worker=worker_id) == {}
    with sessions() as s:
        assert worker_id not in live_workers(s)
    assert run_containers(run_id) == []
    assert set(_containers(run=tag)) == {alive, other_store, no_worker}
    await handle.terminate("test done")


async def test_a_worker_without_its_sandbox_image_refuses_to_start_and_holds_nothing(
    client: Client, other_queue: Settings, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sources changed and the image was not built again: every cell would fail and be retried until
    # its run's deadline, so the worker must not poll at all.
    monkeypatch.setattr(imagebuild, "image_ref", lambda: "durable-rlm-sandbox:never-built-for-a-test")
    with sessions() as s:
        leased_before = live_workers(s)
    with pytest.raises(
        SandboxUnavailable, match=r"sandbox image durable-rlm-sandbox:never-built-for-a-test is missing"
    ):
        async with running_worker(client, other_queue, worker_id="w-no-image"):
            pytest.fail("the worker started without its sandbox image")
    with sessions() as s:
        assert live_workers(s) == leased_before
    assert _containers(worker="w-no-image") == {}


async def test_live_workers_sandboxes_survive_each_others_sweeps(
    client: Client, harness: Harness, other_queue: Settings, tmp_path: Path
) -> None:
    """Two workers with 1 s leases sweep every 2 s while one runs a 6 s cell: renewals keep its sandbox."""
    options = WorkerOptions(lease_ttl_s=1.0)
    neighbour = replace(other_queue, task_queue=f"{other_queue.task_queue}-n")
    path, expected = word_context(tmp_path / "c.txt", 2_000)
    async with running_worker(client, other_queue, options), running_worker(client, neighbour, options):
        handle = await harness.start(
            "How many times does the word 'ERROR' appear? Use 8 chunks.",
            path,
            model="scripted/mapreduce",
            sub_model="scripted/leaf?latency_ms=700",
            limits=Limits(max_concurrency=1, heartbeat_timeout_s=10),
            task_queue=other_queue.task_queue,
        )
        run_id = handle.id.rsplit("/", 1)[0]
        finished = asyncio.ensure_future(harness.finish(handle))
        seen: set[str] = set()
        while not finished.done():
            seen |= set(_containers(run=run_id))
            await asyncio.sleep(0.2)
        out = finished.result()
    assert out.summary.answer == str(expected)
    # One sandbox for the whole cell: a swept one would have been replaced by a new container.
    assert len(seen) == 1, seen
    sandbox.reap(labels={"run": out.run_id})


# --- stopping ------------------------------------------------------------------------------------


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()


def _refusing_env() -> dict[str, str]:
    return {
        "OPENAI_API_BASE": f"http://127.0.0.1:{closed_port()}/v1",
        "OPENAI_API_KEY": "sk-test",
        "RLM_HEARTBEAT_TIMEOUT_S": "2",
    }


async def _wait_retrying(harness: Harness, run_id: str, kind: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with harness.sessions() as s:
            if any(n.kind == kind and n.attempts >= 1 for n in list_nodes(s, run_id)):
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {kind} node of {run_id} retried its model call within {timeout_s} s")


def _stop_within_bound(worker: WorkerProcess, signum: int) -> float:
    sent = time.monotonic()
    worker.signal(signum)
    try:
        worker.proc.wait(timeout=STOP_BOUND_S)
    except Exception as exc:
        raise AssertionError(
            f"the worker ignored {signal.Signals(signum).name} for {STOP_BOUND_S} s:\n"
            + worker.log_path.read_text()[-3000:]
        ) from exc
    return time.monotonic() - sent


@pytest.mark.parametrize(
    "signum",
    # SIGTERM is also sent by the other stopping tests; this variant adds little to CI's time budget.
    [pytest.param(signal.SIGTERM, marks=pytest.mark.slow), signal.SIGINT],
    ids=["SIGTERM", "SIGINT"],
)
async def test_worker_stops_while_its_model_call_retries_and_the_run_goes_on(
    harness: Harness, other_queue: Settings, workers: list[WorkerProcess], tmp_path: Path, signum: int
) -> None:
    path, _ = word_context(tmp_path / "c.txt", 500)
    workers.append(WorkerProcess(other_queue, tmp_path / "w.log", _refusing_env()))
    handle = await harness.start(
        "How many times does the word 'ERROR' appear?",
        path,
        model=OPENAI_MODEL,
        sub_model=OPENAI_MODEL,
        task_queue=other_queue.task_queue,
    )
    run_id = handle.id.rsplit("/", 1)[0]
    await _wait_retrying(harness, run_id, "root")
    _stop_within_bound(workers[0], signum)
    # Left to the next worker: the run is still running.
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    await handle.terminate("test done")


async def test_worker_stops_while_a_store_call_hangs(
    harness: Harness,
    other_queue: Settings,
    engine: Engine,
    sessions: sessionmaker[Session],
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    """A model call's reservation waits on a row lock (a database gone quiet): its thread cannot be
    cancelled, and the worker must leave it behind rather than wait for it."""
    tenant = f"locked-{uuid.uuid4().hex[:8]}"
    with sessions.begin() as s:
        create_tenant(s, tenant, Decimal("10"))
    workers.append(WorkerProcess(other_queue, tmp_path / "w.log", {"RLM_HEARTBEAT_TIMEOUT_S": "2"}))
    workers[0].wait_serving()
    path, _ = word_context(tmp_path / "c.txt", 500)
    with engine.connect() as holder, engine.connect() as watcher:
        lock = holder.begin()
        holder.execute(text("SELECT id FROM tenants WHERE name = :n FOR NO KEY UPDATE"), {"n": tenant})
        holder_pid = holder.execute(text("SELECT pg_backend_pid()")).scalar()
        handle = await harness.start(
            "How many times does the word 'ERROR' appear?",
            path,
            model="scripted/search",
            tenant=tenant,
            task_queue=other_queue.task_queue,
        )
        waiting = text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))")
        for _ in range(300):
            blocked = watcher.execute(waiting, {"pid": holder_pid}).scalar()
            watcher.rollback()  # PostgreSQL keeps one snapshot of pg_stat_activity per transaction
            if blocked:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the worker's reservation never waited on the tenant's row lock")
        try:
            _stop_within_bound(workers[0], signal.SIGTERM)
        finally:
            lock.rollback()
    await handle.terminate("test done")


def test_a_second_signal_ends_the_worker_at_once(
    other_queue: Settings, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    worker = WorkerProcess(other_queue, tmp_path / "w.log", _refusing_env())
    try:
        worker.wait_serving()
        worker.signal(signal.SIGTERM)
        worker.signal(signal.SIGINT)
        # Both are pending at once; the kernel delivers the lower number (SIGINT) first.
        assert worker.proc.wait(timeout=STOP_BOUND_S) in (128 + signal.SIGINT, 128 + signal.SIGTERM)
        log = worker.log_path.read_bytes()
        assert b"worker.exit_now" in log and b"worker.stopped" not in log
    finally:
        worker.stop()


def test_activities_are_refused_the_store_once_the_worker_abandons_them(
    sessions: sessionmaker[Session],
) -> None:
    fenced = _FencedSessions(sessions)
    with fenced() as s:
        assert s.execute(select(1)).scalar() == 1
    fenced.fenced = True
    with pytest.raises(WorkerStopping, match="another worker"):
        fenced()
    with pytest.raises(WorkerStopping):
        fenced.begin()


@pytest.mark.parametrize("leaf_mode", ["workflow", pytest.param("inline", marks=pytest.mark.slow)])
async def test_worker_stops_while_a_cell_waits_on_retrying_subcalls_and_the_next_worker_finishes(
    harness: Harness, other_queue: Settings, workers: list[WorkerProcess], tmp_path: Path, leaf_mode: str
) -> None:
    path, expected = word_context(tmp_path / "c.txt", 2_000)
    workers.append(WorkerProcess(other_queue, tmp_path / "w1.log", _refusing_env()))
    handle = await harness.start(
        "How many times does the word 'ERROR' appear? Use 6 chunks.",
        path,
        model="scripted/mapreduce",
        sub_model=OPENAI_MODEL,
        limits=Limits(max_concurrency=3, heartbeat_timeout_s=5, leaf_mode=leaf_mode),
        task_queue=other_queue.task_queue,
    )
    run_id = handle.id.rsplit("/", 1)[0]
    await _wait_retrying(harness, run_id, "leaf")
    _stop_within_bound(workers[0], signal.SIGTERM)
    # The stopped worker removed its own sandboxes, the one of the cell it abandoned too.
    assert run_containers(run_id) == []

    with leaf_endpoint() as base:
        env = {"OPENAI_API_BASE": base, "OPENAI_API_KEY": "sk-test", "RLM_HEARTBEAT_TIMEOUT_S": "2"}
        workers.append(WorkerProcess(other_queue, tmp_path / "w2.log", env))
        out = await asyncio.wait_for(harness.finish(handle), timeout=120)
    assert out.result.status == "completed", out.result.error
    assert out.summary.answer == str(expected)
    leaves = [r for r in out.tree if r.kind == "leaf"]
    assert len(leaves) == 6
    with harness.sessions() as s:
        entries = list(s.scalars(select(LedgerEntry).where(LedgerEntry.run_id == run_id)))
    keys = {e.reservation_id: e.idempotency_key for e in entries if e.kind == "reserve"}
    settled = Counter(keys[e.reservation_id] for e in entries if e.kind == "settle")
    assert {f"{r.node_id}/leaf": settled[f"{r.node_id}/leaf"] for r in leaves} == {
        f"{r.node_id}/leaf": 1 for r in leaves
    }
    sandbox.reap(labels={"run": run_id})
