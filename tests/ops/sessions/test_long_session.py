"""A long session survives its workers: turns that each read and write notes and carry a variable,
the worker SIGKILLed at random moments inside turns, every answer right, no model call billed twice,
the session's workflow continued as new, and ``rlm prune`` shrinking the store while the session's
view and spend stay exactly as they were. Prints turn latency and store growth per turn."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

import sandbox
from orchestrator import sessions as lib
from orchestrator.retention import prune
from orchestrator.runs import settled
from orchestrator.settings import Settings
from orchestrator.store import create_tenant, ledger_sums
from orchestrator.store.models import Blob, utcnow
from orchestrator.store.sessions import get_session
from orchestrator.workflows.session import session_workflow_id
from orchestrator.workflows.types import Limits
from tests.ops.control.billing import assert_billed_once
from tests.orchestrator.workers import WorkerProcess

# Short leases and cell heartbeats: a killed worker's cell runs again elsewhere within seconds.
WORKER_ENV = {"RLM_HEARTBEAT_TIMEOUT_S": "2"}
CELL_S = 0.4  # each turn's cell sleeps this long after its note: a kill a moment after the ask lands there


def _code(turn: int) -> str:
    # The note first: a kill during the sleep runs the cell again, and its note must still be kept once.
    return (
        f"import time\nn = len(notes)\ncount = globals().get('count', 0) + 1\n"
        f"remember('turn {turn} saw ' + str(n))\ntime.sleep({CELL_S})\n"
        f"FINAL(f'{turn}:{{n}}:{{len(history)}}:{{count}}')\n"
    )


def _stored(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.coalesce(func.sum(Blob.stored_size), 0))) or 0)


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()


async def _long_session(
    turns: int,
    kills: int,
    client: Client,
    sessions: sessionmaker[Session],
    queue: Settings,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("RLM_FAULT_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    kill_at = set(rng.sample(range(2, turns + 1), kills))
    tenant, name = f"long{uuid.uuid4().hex[:6]}", "long"
    with sessions.begin() as s:
        create_tenant(s, tenant, Decimal(100))
    lib.create(
        sessions, tenant, name, model="scripted/code", sub_model="scripted/leaf",
        limits=Limits(heartbeat_timeout_s=3), deadline_s=600,
    )  # fmt: skip
    workers.append(WorkerProcess(queue, tmp_path / "worker0.log", WORKER_ENV))
    workers[-1].wait_serving()
    latencies: list[float] = []
    growth: list[int] = []
    run_ids: list[str] = []
    for turn in range(1, turns + 1):
        before, started = _stored(sessions), time.monotonic()
        reply = await lib.ask(client, sessions, tenant, name, _code(turn), queue.task_queue, turns_per_run=5)
        run_ids.append(reply.run_id)
        if turn in kill_at:
            await asyncio.sleep(rng.uniform(0.75 * CELL_S, 1.5 * CELL_S))
            workers[-1].kill()
            workers.append(WorkerProcess(queue, tmp_path / f"worker{len(workers)}.log", WORKER_ENV))
        _, summary = await settled(sessions, reply.run_id, 300)
        about = f"seed {seed} (RLM_FAULT_SEED), turn {turn}, kills at {sorted(kill_at)}"
        assert summary.answer == f"{turn}:{turn - 1}:{turn - 1}:{turn}", about
        latencies.append(time.monotonic() - started)
        growth.append(_stored(sessions) - before)

    for run_id in run_ids:
        assert_billed_once(sessions, run_id)
    wid = session_workflow_id(tenant, name)
    runs = [w async for w in client.list_workflows(f'WorkflowId = "{wid}"')]
    # Every 5 turns a new run (visibility may not list the newest one yet).
    assert len(runs) >= max(2, turns // 5 - 1), (
        f"the session's workflow continued as new {len(runs) - 1} times"
    )

    view = lib.show(sessions, tenant, name)
    assert view["notes"] == turns and len(view["turns"]) == turns
    with sessions() as s:
        sid = get_session(s, tenant, name).id
        spend = ledger_sums(s, session_id=sid)
    assert Decimal(view["spent_usd"]) == spend.spent == sum(Decimal(t["spent_usd"]) for t in view["turns"])
    size = _stored(sessions)
    with sessions.begin() as s:  # as if the session had been going for hours: recent puts are kept
        s.execute(update(Blob).values(last_put_at=utcnow() - timedelta(hours=2)))
    pruned = prune(sessions, older_than_s=0, tenant=tenant, recent_put=timedelta(0))
    assert len(pruned.runs) == turns - 1  # the last turn stays: the next one restores its variables
    assert _stored(sessions) < size
    assert lib.show(sessions, tenant, name) == view
    with sessions() as s:
        assert ledger_sums(s, session_id=sid) == spend
    # The session goes on after pruning: the last turn's variables and every note are still there.
    reply = await lib.ask(client, sessions, tenant, name, _code(turns + 1), queue.task_queue)
    _, summary = await settled(sessions, reply.run_id, 120)
    assert summary.answer == f"{turns + 1}:{turns}:{turns}:{turns + 1}"

    await lib.close(client, sessions, tenant, name)
    for run_id in [*run_ids, reply.run_id]:
        sandbox.reap(labels={"run": run_id})
    q = statistics.quantiles(latencies, n=20, method="inclusive")
    print(
        f"\nseed {seed}: {turns} turns, kills at {sorted(kill_at)}; turn latency s: median "
        f"{statistics.median(latencies):.2f}, p95 {q[-1]:.2f}, max {max(latencies):.2f} "
        f"(a cell of {CELL_S} s); store growth per turn: median {statistics.median(growth)} B, "
        f"first {growth[0]} B, last {growth[-1]} B; stored {size} B before prune, {_stored(sessions)} B "
        f"after; {len(runs)} workflow runs"
    )


async def test_twelve_turns_with_a_worker_killed(
    client: Client,
    sessions: sessionmaker[Session],
    other_queue: Settings,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    await _long_session(12, 1, client, sessions, other_queue, workers, tmp_path)


@pytest.mark.slow
async def test_two_hundred_turns_with_two_workers_killed(
    client: Client,
    sessions: sessionmaker[Session],
    other_queue: Settings,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    await _long_session(200, 2, client, sessions, other_queue, workers, tmp_path)
