"""The Temporal worker: ``RLMNode`` and ``Leaf`` workflows plus the model, cell and store activities.

Worker settings (measured in docs/orchestrator.md): the sticky workflow cache stays on (replay safety
is untouched either way; the cache only saves replays), the workflow sandbox stays on with this
package's deterministic modules passed through (so a new child workflow does not re-import them) and
its per-payload context questions answered outside it (``workflow_runner.py``), and enough
workflow-task pollers that a parent's next task and a new child's first task are both picked up at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import structlog
from temporalio.client import Client
from temporalio.worker import Worker

import sandbox
from orchestrator.activities.cells import CellActivities, SessionCache
from orchestrator.activities.deps import Deps
from orchestrator.activities.launch import LaunchActivities
from orchestrator.activities.logctx import LogContext
from orchestrator.activities.model import ModelActivities
from orchestrator.activities.records import RecordActivities
from orchestrator.connection import TemporalTarget, connect
from orchestrator.llm.complete import prepare_model
from orchestrator.settings import Settings
from orchestrator.store import make_engine, make_session_factory
from orchestrator.workflow_runner import workflow_runner
from orchestrator.workflows import WORKFLOWS

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    max_cached_workflows: int = 1000
    max_concurrent_workflow_tasks: int = 64
    max_concurrent_workflow_task_polls: int = 8
    nonsticky_to_sticky_poll_ratio: float = 0.5
    # Cells block a thread for as long as they wait on sub-calls; nested nodes each hold one.
    activity_threads: int = 64
    session_capacity: int = 32
    sandbox_limits: sandbox.SandboxLimits = field(default_factory=sandbox.SandboxLimits)
    reap_older_than_s: float | None = 3600.0


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@contextlib.asynccontextmanager
async def running_worker(
    client: Client,
    settings: Settings,
    options: WorkerOptions = WorkerOptions(),
    worker_id: str | None = None,
) -> AsyncIterator[Worker]:
    """Run a worker until the block exits; closes the sandbox sessions it opened."""
    worker_id = worker_id or new_worker_id()
    for model in {settings.model, settings.sub_model}:
        prepare_model(model)
    if settings.sandbox_backend == "docker" and options.reap_older_than_s is not None:
        await asyncio.to_thread(sandbox.reap, older_than_s=options.reap_older_than_s)
    engine = make_engine(settings.database_url)
    deps = Deps(
        settings,
        make_session_factory(engine),
        client,
        asyncio.get_running_loop(),
        worker_id,
        sandbox_labels={"worker": worker_id},
    )
    cache = SessionCache(options.session_capacity)
    models = ModelActivities(deps)
    cells = CellActivities(deps, cache, options.sandbox_limits)
    records = RecordActivities(deps)
    launches = LaunchActivities(deps)
    executor = concurrent.futures.ThreadPoolExecutor(
        options.activity_threads, thread_name_prefix="rlm-activity"
    )
    worker = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=[
            models.generate,
            models.leaf_call,
            cells.execute,
            cells.release_sandbox,
            records.record_node,
            launches.launch,
        ],
        activity_executor=executor,
        interceptors=[LogContext()],
        workflow_runner=workflow_runner(client.data_converter),
        max_cached_workflows=options.max_cached_workflows,
        max_concurrent_workflow_tasks=options.max_concurrent_workflow_tasks,
        max_concurrent_workflow_task_polls=options.max_concurrent_workflow_task_polls,
        nonsticky_to_sticky_poll_ratio=options.nonsticky_to_sticky_poll_ratio,
        max_concurrent_activities=options.activity_threads,
        identity=worker_id,
    )
    log.info("worker.started", worker_id=worker_id, task_queue=settings.task_queue)
    try:
        async with worker:
            yield worker
    finally:
        await asyncio.to_thread(cache.close_all)
        executor.shutdown(wait=False, cancel_futures=True)
        engine.dispose()
        log.info("worker.stopped", worker_id=worker_id)


async def serve(settings: Settings, target: TemporalTarget) -> None:
    """``rlm worker`` / ``rlm dev``: run a worker until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await connect(target)
    async with running_worker(client, settings):
        print(
            f"worker serving task queue {settings.task_queue} on {target.address}; Ctrl-C stops it",
            file=sys.stderr,
        )
        await stop.wait()
