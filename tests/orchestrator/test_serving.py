"""``serving_worker``: a worker counts as serving a queue only while it holds a live lease in this store
and polls that queue on this server; a stopped worker, another queue, or another store's worker does not."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from orchestrator.runs.serving import serving_worker
from orchestrator.settings import Settings
from orchestrator.store import live_workers, renew_lease
from orchestrator.worker import WorkerOptions, running_worker


async def _found(client: Client, sessions: sessionmaker[Session], queue: str) -> str | None:
    """``serving_worker`` once a worker that just started has polled (within 5 s)."""
    for _ in range(50):
        found = await serving_worker(client, sessions, queue)
        if found is not None:
            return found
        await asyncio.sleep(0.1)
    return None


async def test_a_live_polling_worker_of_this_store_serves_its_queue_only(
    client: Client, sessions: sessionmaker[Session], other_queue: Settings
) -> None:
    queue = other_queue.task_queue
    assert await serving_worker(client, sessions, queue) is None  # nobody polls it
    name = f"serving-{uuid.uuid4().hex[:6]}"
    async with running_worker(client, other_queue, WorkerOptions(), worker_id=name):
        assert await _found(client, sessions, queue) == name
        assert await serving_worker(client, sessions, f"{queue}-other") is None
    # Temporal still lists the stopped worker's polls; its dropped lease tells it is gone.
    with sessions() as s:
        assert name not in live_workers(s)
    assert await serving_worker(client, sessions, queue) is None


async def test_a_lease_without_polls_is_not_a_serving_worker(
    client: Client, sessions: sessionmaker[Session], other_queue: Settings
) -> None:
    with sessions.begin() as s:  # alive in the store (e.g. another server's worker), silent on this queue
        renew_lease(s, f"lease-only-{uuid.uuid4().hex[:6]}", host="elsewhere", ttl_s=60)
    assert await serving_worker(client, sessions, other_queue.task_queue) is None


async def test_the_session_worker_serves_the_shared_queue(
    client: Client, sessions: sessionmaker[Session], settings: Settings, worker: None
) -> None:
    assert await _found(client, sessions, settings.task_queue) is not None
    assert await serving_worker(client, sessions, replace(settings, task_queue="nobody").task_queue) is None
