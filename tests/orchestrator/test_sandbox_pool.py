"""A worker's sandbox pool: a node's first cell takes a started container, and the worker's stop removes
the pool with everything else of the worker."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from pathlib import Path

import docker
from temporalio.client import Client

from orchestrator.settings import Settings
from orchestrator.worker import running_worker
from sandbox.docker_backend import MARKER
from tests.orchestrator.harness import Harness, word_context

QUERY = "How many times does the word 'ERROR' appear? Use 4 chunks."


def _worker_containers(worker_id: str) -> dict[str, dict[str, str]]:
    """Labels by id of the containers carrying the worker's label."""
    client = docker.from_env()
    try:
        found = client.containers.list(all=True, filters={"label": f"{MARKER}.worker={worker_id}"})
        return {c.id or "": dict(c.labels or {}) for c in found}
    finally:
        client.close()


async def _pooled(worker_id: str, count: int) -> set[str]:
    """The ids of the worker's containers that no run holds, once there are ``count`` of them."""
    for _ in range(600):
        idle = {cid for cid, labels in _worker_containers(worker_id).items() if f"{MARKER}.run" not in labels}
        if len(idle) == count:
            return idle
        await asyncio.sleep(0.1)
    raise AssertionError(f"the pool did not reach {count} containers")


async def test_a_node_takes_a_pooled_sandbox_and_the_worker_removes_its_pool_when_it_stops(
    client: Client, harness: Harness, other_queue: Settings, tmp_path: Path
) -> None:
    settings = dataclasses.replace(other_queue, sandbox_pool=2)
    path, expected = word_context(tmp_path / "c.txt", 20_000)
    worker_id = f"pool-{uuid.uuid4().hex[:6]}"
    async with running_worker(client, settings, worker_id=worker_id):
        first = await harness.run(QUERY, path, model="scripted/mapreduce", task_queue=other_queue.task_queue)
        assert first.summary.answer == str(expected)
        pooled = await _pooled(worker_id, 2)
        second = await harness.run(QUERY, path, model="scripted/mapreduce", task_queue=other_queue.task_queue)
        # The context reached the REPL over the control channel, and the node's container is gone.
        assert second.summary.answer == str(expected)
        left = set(_worker_containers(worker_id))
        assert len(pooled - left) == 1, (pooled, left)
        assert (await _pooled(worker_id, 2)) & pooled == pooled & left  # refilled with a new one
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 10
    assert _worker_containers(worker_id) == {}
