"""A worker killed with SIGKILL while sub-calls are in flight; a new worker finishes the run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

import sandbox
from orchestrator.settings import Settings
from orchestrator.store import list_nodes, list_steps
from orchestrator.store.models import LedgerEntry
from orchestrator.workflows.types import LEAF_MODES, Limits
from tests.orchestrator.harness import Harness, word_context


class WorkerProcess:
    """``rlm worker`` as a subprocess (its own process group, so SIGKILL takes everything)."""

    def __init__(self, settings: Settings, log: Path) -> None:
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": settings.temporal_address or "",
            "RLM_DATABASE_URL": settings.database_url,
            "RLM_DATA_DIR": str(settings.data_dir),
            "RLM_TASK_QUEUE": settings.task_queue,
            "RLM_SANDBOX_BACKEND": settings.sandbox_backend,
            "RLM_MODEL": settings.model,
            "RLM_SUB_MODEL": settings.sub_model,
            "RLM_LOG_LEVEL": "info",
        }
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "rlm"), "worker"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture
def workers(other_queue: Settings, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()


@pytest.mark.parametrize("leaf_mode", LEAF_MODES)
async def test_sigkilled_worker_mid_subcalls_then_new_worker_finishes_without_double_billing(
    harness: Harness, other_queue: Settings, workers: list[WorkerProcess], tmp_path: Path, leaf_mode: str
) -> None:
    path, expected = word_context(tmp_path / "w.txt", 8_000)
    workers.append(WorkerProcess(other_queue, tmp_path / "worker1.log"))
    handle = await harness.start(
        "How many times does the word 'ERROR' appear?",
        path,
        model="scripted/mapreduce?chunks=40",
        sub_model="scripted/leaf?latency_ms=400",
        limits=Limits(max_concurrency=4, heartbeat_timeout_s=5, leaf_mode=leaf_mode),
        task_queue=other_queue.task_queue,
    )
    run_id = handle.id.rsplit("/", 1)[0]

    # Kill once some sub-calls completed and others are in flight.
    for _ in range(600):
        with harness.sessions() as s:
            done = [n for n in list_nodes(s, run_id) if n.kind == "leaf" and n.status == "completed"]
        if len(done) >= 8:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the first worker never completed 8 sub-calls")
    workers[0].kill()
    with harness.sessions() as s:
        completed_before_kill = {n.node_id for n in list_nodes(s, run_id) if n.status == "completed"}
    assert 8 <= len(completed_before_kill) < 40

    workers.append(WorkerProcess(other_queue, tmp_path / "worker2.log"))
    out = await asyncio.wait_for(harness.finish(handle), timeout=240)

    assert out.result.status == "completed", out.result.error
    assert out.summary.answer == str(expected)
    leaves = [r for r in out.tree if r.kind == "leaf"]
    assert len(leaves) == 40 and all(r.status == "completed" for r in leaves)
    with harness.sessions() as s:
        entries = list(s.scalars(select(LedgerEntry).where(LedgerEntry.run_id == run_id)))
        by_reservation = {e.reservation_id: e for e in entries if e.kind == "reserve"}
        settled = Counter(
            by_reservation[e.reservation_id].idempotency_key for e in entries if e.kind == "settle"
        )
        leaf_steps = {r.node_id: len(list_steps(s, r.node_id)) for r in leaves}
    # Every sub-call was paid exactly once, including those that completed before the kill.
    leaf_keys = {f"{r.node_id}/leaf" for r in leaves}
    assert {k: settled[k] for k in leaf_keys} == dict.fromkeys(leaf_keys, 1)
    assert all(count == 1 for count in settled.values())
    assert leaf_steps == {r.node_id: 1 for r in leaves}
    sandbox.reap(labels={"run": run_id})
