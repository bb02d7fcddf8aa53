"""The Temporal worker: ``RLMNode`` and ``Leaf`` workflows plus the model, cell and store activities.

Worker settings (measured in docs/orchestrator.md): the sticky workflow cache stays on (replay safety
is untouched either way; the cache only saves replays), the workflow sandbox stays on with this
package's deterministic modules passed through (so a new child workflow does not re-import them) and
its per-payload context questions answered outside it (``workflow_runner.py``), and enough
workflow-task pollers that a parent's next task and a new child's first task are both picked up at once.

Stopping is bounded: in-flight activities get a short grace, then whatever is still running is
abandoned to the next worker: the store refuses this worker's activities from then on (a cell whose
container is removed on the way out records nothing), its containers and lease are removed, and
``serve`` leaves the process within ``STOP_BOUND_S`` of the first signal whatever is still stuck.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import importlib
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

import sandbox
from orchestrator.activities.cells import CellActivities, SessionCache
from orchestrator.activities.deps import Deps
from orchestrator.activities.launch import LaunchActivities
from orchestrator.activities.logctx import LogContext
from orchestrator.activities.model import ModelActivities
from orchestrator.activities.records import RecordActivities
from orchestrator.activities.session import SessionActivities
from orchestrator.connection import TemporalTarget, connect
from orchestrator.errors import RlmError
from orchestrator.llm.call_process import ModelCallProcess
from orchestrator.llm.complete import ModelGate, complete, prepare_model
from orchestrator.settings import Settings
from orchestrator.store import make_engine, make_session_factory, store_scope
from orchestrator.vocabulary import ModelCalls
from orchestrator.worker_lease import LeaseTiming, WorkerLease, in_thread
from orchestrator.workflow_runner import workflow_runner
from orchestrator.workflows import WORKFLOWS
from orchestrator.workflows.session import RLMSession

log = structlog.get_logger(__name__)

# The engine's code, for the worker's Build ID: its workflows and what they run on.
CODE_ROOTS = (Path(__file__).parent, Path(sandbox.__file__).parent)


@dataclass(frozen=True)
class WorkerOptions:
    max_cached_workflows: int = 1000
    # A leaf call is a local activity: its workflow's task (and task slot) stays open while the model
    # answers, so this also bounds how many leaf calls, and so cells waiting on them, run at once.
    max_concurrent_workflow_tasks: int = 512
    max_concurrent_local_activities: int = 512
    max_concurrent_workflow_task_polls: int = 8
    nonsticky_to_sticky_poll_ratio: float = 0.5
    # Every activity is async: a cell waiting on its sub-calls is a suspended coroutine, so a wide or
    # deep tree may have hundreds waiting at once on one worker. Each running cell holds a sandbox.
    max_concurrent_activities: int = 1000
    # Threads for the cells' blocking work: a step while the sandbox computes, store calls, starting
    # and closing sandboxes. A cell holds one only while its code computes, never while it waits.
    cell_threads: int = 64
    # Threads that run workflow activations. An activation is a short CPU-bound step and a leaf's local
    # activity holds its task slot but no thread, so a few threads serve hundreds of slots; more would
    # only contend for the interpreter lock (the SDK's default is one thread per slot).
    workflow_threads: int = 16
    session_capacity: int = 32
    # Started sandbox containers kept ready (None: Settings.sandbox_pool).
    sandbox_pool: int | None = None
    # False: the pool is filled once and not after a take (the one-shot worker of `rlm run`).
    sandbox_pool_refill: bool = True
    sandbox_limits: sandbox.SandboxLimits = field(default_factory=sandbox.SandboxLimits)
    # Calls of one model in flight at once on this worker, over all its runs (None: Settings'
    # RLM_MODEL_CONCURRENCY; 0: no limit). They queue on the event loop, holding no thread.
    model_concurrency: int | None = None
    # Where its model calls run (None: Settings.model_calls). `auto` means in the worker here: serve(),
    # behind `rlm dev` and `rlm worker`, resolves it to a child process before it starts the worker.
    model_calls: ModelCalls | None = None
    # A lease not renewed for this long is dead (None: Settings.heartbeat_timeout_s, see worker_lease).
    lease_ttl_s: float | None = None
    # Stopping: activities may finish for stop_grace_s, are then cancelled, and the worker waits
    # stop_wait_s more for them; cleanup (containers, sessions, lease) gets cleanup_s.
    stop_grace_s: float = 1.5
    stop_wait_s: float = 1.5
    cleanup_s: float = 2.0


# The OpenAI client (litellm's, for OpenAI and every OpenAI-compatible provider) imports all of its
# resource modules on its first request: 0.4 s on the 2-core machine, which a long-lived worker pays
# in the background at start instead of in its first run's first model call.
FIRST_CALL_MODULES = ("openai.resources",)
# serve() leaves the process this long after the first SIGINT/SIGTERM, whatever is still running.
STOP_BOUND_S = 8.0


class SandboxUnavailable(RlmError):
    """The worker's sandbox backend cannot start a sandbox (no Docker engine, no image): it takes no work."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"this worker cannot start sandboxes: {reason}")
        self.reason = reason


class WorkerStopping(RuntimeError):
    """The worker gave up on its activities while stopping; they run again on another worker."""


class _FencedSessions(sessionmaker[Session]):
    """The activities' sessions, refused once the worker abandons its activities (see the module doc)."""

    def __init__(self, base: sessionmaker[Session]) -> None:
        super().__init__(**base.kw)
        self.fenced = False

    def __call__(self, **local_kw: Any) -> Session:
        if self.fenced:
            raise WorkerStopping("this worker is stopping; the activity runs again on another worker")
        return super().__call__(**local_kw)


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@contextlib.asynccontextmanager
async def running_worker(
    client: Client,
    settings: Settings,
    options: WorkerOptions = WorkerOptions(),
    worker_id: str | None = None,
) -> AsyncIterator[Worker]:
    """Run a worker until the block exits; then stop it within a bound (see the module doc)."""
    worker_id = worker_id or new_worker_id()
    log.debug("worker.starting", worker_id=worker_id)  # with worker.started: the start's cost in the log
    for model in {settings.model, settings.sub_model}:
        prepare_model(model)
    # The image the check found is the pool's: it is not looked up twice.
    image = await _checked_image() if settings.sandbox_backend == "docker" else None
    engine = make_engine(settings.database_url)
    store_sessions = make_session_factory(engine)
    lease = WorkerLease(
        store_sessions,
        worker_id,
        store_scope(settings.database_url),
        LeaseTiming(options.lease_ttl_s or settings.heartbeat_timeout_s),
        docker=settings.sandbox_backend == "docker",
    )
    activity_sessions = _FencedSessions(store_sessions)
    store_thread = store_executor(engine)
    deps = Deps(
        settings=settings,
        sessions=activity_sessions,
        client=client,
        worker_id=worker_id,
        sandbox_labels=lease.labels,
        store_executor=store_thread,
    )
    pool_size = settings.sandbox_pool if options.sandbox_pool is None else options.sandbox_pool
    pool = sandbox.SandboxPool(
        pool_size if settings.sandbox_backend == "docker" else 0,
        limits=options.sandbox_limits,
        labels=lease.labels,
        image=image,
        refill=options.sandbox_pool_refill,
    )
    cache = SessionCache(options.session_capacity)
    limit = settings.model_concurrency if options.model_concurrency is None else options.model_concurrency
    in_child = (options.model_calls or settings.model_calls).in_process_of_their_own(long_lived=False)
    call_process = ModelCallProcess() if in_child else None
    calls = call_process.complete if call_process is not None else complete
    models = ModelActivities(deps, ModelGate(limit), calls=calls)
    executor = concurrent.futures.ThreadPoolExecutor(options.cell_threads, thread_name_prefix="rlm-cell")
    activations = concurrent.futures.ThreadPoolExecutor(
        options.workflow_threads, thread_name_prefix="rlm-workflow"
    )
    cells = CellActivities(deps, cache, options.sandbox_limits, executor, pool)
    records = RecordActivities(deps)
    launches = LaunchActivities(deps)
    turns = SessionActivities(deps)
    worker = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[*WORKFLOWS, RLMSession],
        activities=[
            models.generate,
            models.leaf_call,
            cells.execute,
            cells.release_sandbox,
            records.record_node,
            launches.launch,
            turns.turn_start,
            turns.turn_finish,
        ],
        interceptors=[LogContext()],
        workflow_runner=workflow_runner(client.data_converter),
        max_cached_workflows=options.max_cached_workflows,
        max_concurrent_workflow_tasks=options.max_concurrent_workflow_tasks,
        workflow_task_executor=activations,
        max_concurrent_local_activities=options.max_concurrent_local_activities,
        max_concurrent_workflow_task_polls=options.max_concurrent_workflow_task_polls,
        nonsticky_to_sticky_poll_ratio=options.nonsticky_to_sticky_poll_ratio,
        max_concurrent_activities=options.max_concurrent_activities,
        identity=worker_id,
        build_id=build_id(),
        graceful_shutdown_timeout=timedelta(seconds=options.stop_grace_s),
    )
    # Before polling: no container of this worker may exist without its lease.
    try:
        await lease.start()
    except BaseException:
        engine.dispose()
        raise
    await worker.__aenter__()
    pool.start()
    if call_process is not None:
        await call_process.start()  # its litellm import overlaps the worker's start, not a first call
    log.info(
        "worker.started",
        worker_id=worker_id,
        task_queue=settings.task_queue,
        model_concurrency=limit,
        model_calls=ModelCalls.PROCESS if call_process is not None else ModelCalls.WORKER,
    )
    try:
        yield worker
    finally:
        try:
            await _stop_worker(worker, options.stop_grace_s + options.stop_wait_s)
        finally:
            try:
                await models.aborts.close()
            finally:
                if call_process is not None:
                    await call_process.close()
            activity_sessions.fenced = True
            await asyncio.gather(
                _release_sandboxes(lease, pool, cache, options.cleanup_s), lease.close(options.cleanup_s)
            )
            executor.shutdown(wait=False, cancel_futures=True)
            activations.shutdown(wait=False, cancel_futures=True)
            if store_thread is not None:
                store_thread.shutdown(wait=False, cancel_futures=True)
            engine.dispose()
            log.info("worker.stopped", worker_id=worker_id)


async def _checked_image() -> str:
    """The sandbox image, present on a reachable engine. Refuse to serve without either: every cell
    picked up would fail and be retried until its run's deadline, while the operator who started this
    worker is here to fix it now."""
    try:
        return await in_thread(sandbox.check_ready)
    except sandbox.SandboxError as exc:
        raise SandboxUnavailable(str(exc)) from None


async def _stop_worker(worker: Worker, bound_s: float) -> None:
    """Stop polling, let activities finish or cancel them; give up after ``bound_s``: Temporal's
    shutdown waits for local activities still retrying and for threads that ignore the cancel."""
    try:
        await asyncio.wait_for(worker.__aexit__(None, None, None), bound_s)
    except TimeoutError:
        log.warning("worker.activities_abandoned", after_s=bound_s)


async def _release_sandboxes(
    lease: WorkerLease, pool: sandbox.SandboxPool, cache: SessionCache, timeout_s: float
) -> None:
    """Remove this worker's containers (its pool's, those of abandoned cells too), then its sessions'
    files. The pool stops refilling first, so no container of the worker starts after the sweep."""
    try:
        await in_thread(pool.close, timeout_s)
        if lease.docker:
            removed = await in_thread(lease.remove_own, timeout_s)
            log.info("worker.sandboxes_removed", containers=removed)
        await in_thread(cache.close_all, timeout_s)
    except Exception as exc:  # other workers' sweeps remove what is left
        log.warning("worker.sandboxes_left", error=str(exc)[:300])


def _import_in_background(modules: tuple[str, ...]) -> None:
    """Import ``modules`` on a thread while the worker waits for its first task; a task that needs one
    meanwhile waits on the import lock for the same import, never runs it twice."""

    def run() -> None:
        started = time.monotonic()
        for name in modules:
            try:
                importlib.import_module(name)
            except ImportError as exc:  # an optional client this installation lacks: its first call says so
                log.debug("worker.preimport_skipped", module=name, error=str(exc)[:200])
        log.info("worker.preimported", modules=list(modules), ms=round((time.monotonic() - started) * 1000))

    threading.Thread(target=run, name="rlm-preimport", daemon=True).start()


def _leave(code: int, event: str, **data: object) -> None:
    """End the process now: the bound is reached, or the operator asked twice."""
    with contextlib.suppress(BaseException):  # may run inside a signal handler mid-write to stderr
        log.warning(event, exit_code=code, **data)
        sys.stderr.flush()
    os._exit(code)


async def serve(
    settings: Settings, target: TemporalTarget, on_stop: Callable[[], None] | None = None
) -> None:
    """``rlm worker`` / ``rlm dev``: run a worker until SIGINT or SIGTERM.

    The first signal calls ``on_stop`` (in the event loop, at once, before the worker stops), stops the
    worker (bounded, see the module doc) and arms a watchdog that ends the process ``STOP_BOUND_S``
    later if it is still alive; a second signal ends it at once. Only for processes that end when this
    returns.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if received:
            _leave(128 + signum, "worker.exit_now", signal=signal.Signals(signum).name)
        received.append(signum)
        watchdog = threading.Timer(
            STOP_BOUND_S,
            _leave,
            args=(128 + signum, "worker.stop_forced"),
            kwargs={"after_s": STOP_BOUND_S},
        )
        watchdog.daemon = True
        watchdog.start()
        if on_stop is not None:
            loop.call_soon_threadsafe(on_stop)
        loop.call_soon_threadsafe(stop.set)

    # signal.signal, not loop.add_signal_handler: a second signal must end the process even when the
    # event loop is no longer running (asyncio.run waiting for tasks or threads after this returns).
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        client = await connect(target)
        long_lived = WorkerOptions(model_calls=_long_lived_calls(settings.model_calls))
        async with running_worker(client, settings, long_lived):
            print(
                f"worker serving task queue {settings.task_queue} on {target.address}; Ctrl-C stops it",
                file=sys.stderr,
            )
            if long_lived.model_calls == ModelCalls.WORKER:  # else the model-call process imports them
                _import_in_background(FIRST_CALL_MODULES)
            await stop.wait()
            log.info("worker.stopping", signal=signal.Signals(received[0]).name, bound_s=STOP_BOUND_S)
    finally:
        if not received:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        # asyncio.run joins the default executor's threads on the way out: one stuck in a store call
        # (a lock, a database gone quiet) would hold the process past the bound. Leave them behind.
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(1))


def store_executor(engine: Engine) -> concurrent.futures.ThreadPoolExecutor | None:
    """The activities' store thread for ``engine`` (``Deps.store_executor``): one on SQLite, whose writes
    all wait for its one write lock; none elsewhere (the event loop's default executor)."""
    if engine.dialect.name != "sqlite":
        return None
    return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rlm-store")


def _long_lived_calls(setting: ModelCalls) -> ModelCalls:
    return ModelCalls.PROCESS if setting.in_process_of_their_own(long_lived=True) else ModelCalls.WORKER


@functools.cache
def build_id() -> str:
    """The worker's Build ID (shown on every workflow task it completes): a digest of the engine's
    source, so it changes whenever that code does. Temporal's default digests the code of every module
    the process has loaded, litellm's thousands included: 0.3 s of CPU at each worker start."""
    digest = hashlib.sha256()
    for root in CODE_ROOTS:
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    return f"durable-rlm-{digest.hexdigest()[:16]}"
