"""``execute``: run one code cell in the node's sandbox session and bridge its sub-calls.

An async activity, so that a cell waiting on its sub-calls holds no worker thread: the session's cell
is driven a step at a time (``sandbox.CellRun.advance``). A step blocks only while the sandbox computes,
so it runs in the cells' thread pool; between steps the activity is back on the event loop, where the
``SubcallBridge`` awaits the ``subcall`` Update and the next step writes its answer back. A read loop
in a thread that handed requests to the loop would keep that thread waiting on every answer; this
way a thousand cells waiting on their children cost a thousand suspended coroutines. Store calls and
starting or closing a sandbox also run in the pool.

Sessions live in a per-worker cache keyed by node. A worker that does not hold the node's session, or
whose session is behind the node (another worker ran the previous cell), restores the last snapshot
from the store. A cell whose step is already recorded is not run again (its effects are in the
snapshot and its sub-calls were answered).

A heartbeat task beats while the cell runs and stops the cell (closes the session, which removes its
container, and abandons a sub-call being waited on) when the run's deadline passes, when the activity
is cancelled (``rlm abort``, its timeout) or when the worker shuts down: the activity never ends with
its container still running. Past the deadline the activity fails ``DeadlinePassed`` (not retried; the
node ends ``timed_out``) and starts no container.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

import sandbox
from orchestrator.activities import texts
from orchestrator.activities.bridge import SubcallBridge
from orchestrator.activities.cell_record import CellRecord
from orchestrator.activities.cell_watch import Guard, deadline_error, watch
from orchestrator.activities.context import local_context
from orchestrator.activities.deps import Deps
from orchestrator.activities.turn_memory import turn_memory
from orchestrator.store import (
    find_step,
    get_blob,
    latest_snapshot,
    put_blob,
    record_step,
    save_snapshot,
    upsert_node,
)
from orchestrator.vocabulary import StepKind
from orchestrator.workflows.types import ExecuteInput, ExecuteOutput, NodeInput

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Threads for the cells' blocking work when the worker gives none (tests that build CellActivities).
DEFAULT_THREADS = 64


@dataclass
class _Cached:
    session: sandbox.SandboxSession
    number: int  # the number of the last cell whose effects this session holds


class SessionCache:
    """The sandbox sessions this worker holds, least recently used evicted beyond ``capacity``."""

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, _Cached] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, node_id: str) -> _Cached | None:
        with self._lock:
            return self._items.pop(node_id, None)

    def put(self, node_id: str, item: _Cached) -> None:
        evicted: list[_Cached] = []
        with self._lock:
            self._items[node_id] = item
            while len(self._items) > self.capacity:
                evicted.append(self._items.popitem(last=False)[1])
        for old in evicted:
            old.session.close()

    def drop(self, node_id: str) -> None:
        item = self.take(node_id)
        if item is not None:
            item.session.close()

    def close_all(self) -> None:
        with self._lock:
            items = list(self._items.values())
            self._items.clear()
        for item in items:
            item.session.close()


class CellActivities:
    def __init__(
        self,
        deps: Deps,
        cache: SessionCache,
        limits: sandbox.SandboxLimits,
        executor: concurrent.futures.ThreadPoolExecutor | None = None,
        pool: sandbox.SandboxPool | None = None,
    ) -> None:
        self.deps = deps
        self.cache = cache
        self.limits = limits
        # Where a node's first container comes from when one is ready (the worker starts and stops it).
        self.pool = pool
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(
            DEFAULT_THREADS, thread_name_prefix="rlm-cell"
        )
        # The cell each node is running on this worker, so that release_sandbox can stop it.
        self._running: dict[str, Guard] = {}

    async def _blocking(self, fn: Callable[[], T]) -> T:
        """``fn()`` in the cells' thread pool, with this task's log context."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, contextvars.copy_context().run, fn)

    def _recorded(self, inp: ExecuteInput) -> ExecuteOutput | str:
        """The output of the cell if it is already recorded, else its code."""
        with self.deps.sessions.begin() as session:
            done = find_step(session, inp.node.node_id, inp.iteration, StepKind.CELL, inp.index)
            if done is not None:
                return _output_of(session, CellRecord.from_data(done.data))
            return texts.unpack(session, inp.code)

    def _open(self, node: NodeInput, number: int) -> _Cached:
        """The node's sandbox session holding the effects of every cell numbered before ``number``."""
        cached = self.cache.take(node.node_id)
        if cached is not None and cached.number == number - 1:
            return cached
        if cached is not None:
            cached.session.close()
        with self.deps.sessions() as db:
            path = local_context(db, node, self.deps.context_dir)
            snap = latest_snapshot(db, node.node_id)
            state = get_blob(db, snap.blob_sha) if snap is not None and snap.cell < number else None
            restored_cell = snap.cell if state is not None and snap is not None else 0
            turn = turn_memory(db, node.session, own_state=state is not None)
        limits = sandbox.SandboxLimits(
            **{**self.limits.__dict__, "cell_timeout_s": node.run.limits.cell_timeout_s}
        )
        opened = sandbox.open_session(
            backend="docker" if self.deps.settings.sandbox_backend == "docker" else "process",
            context_path=path,
            limits=limits,
            labels={**self.deps.sandbox_labels, "run": node.run.run_id, "node": node.node_id},
            pool=self.pool,
        )
        if state is not None:
            opened.restore(state)
        if turn is not None:
            turn.install(opened)
        log.info("session.opened", node_id=node.node_id, restored_cell=restored_cell, number=number)
        return _Cached(opened, number - 1)

    async def _open_watched(self, node: NodeInput, number: int, guard: Guard) -> _Cached:
        """``_open`` in the pool; a session that finishes opening after the activity was cancelled is
        closed then, and one opened after the cell was stopped is closed at once."""
        opening = asyncio.ensure_future(self._blocking(functools.partial(self._open, node, number)))
        try:
            cached = await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(self._close_opened)
            raise
        await guard.watch(cached.session)
        return cached

    def _close_opened(self, opening: asyncio.Future[_Cached]) -> None:
        if not opening.cancelled() and opening.exception() is None:
            self._executor.submit(opening.result().session.close)

    @activity.defn(name="execute")
    async def execute(self, inp: ExecuteInput) -> ExecuteOutput:
        node = inp.node
        recorded = await self._blocking(functools.partial(self._recorded, inp))
        if isinstance(recorded, ExecuteOutput):
            return recorded
        guard = Guard(node.run.deadline_epoch_s, self._blocking)
        if guard.expired():
            raise deadline_error("before the cell started")
        self._running[node.node_id] = guard
        watcher = asyncio.create_task(watch(guard))
        try:
            return await self._execute(inp, recorded, guard)
        except asyncio.CancelledError:
            # Cancelled while a step ran in a thread: that thread ends once the session is closed.
            await asyncio.shield(guard.stop("the activity was cancelled"))
            raise
        finally:
            watcher.cancel()
            if self._running.get(node.node_id) is guard:
                del self._running[node.node_id]

    async def _execute(self, inp: ExecuteInput, code: str, guard: Guard) -> ExecuteOutput:
        node = inp.node
        try:
            cached = await self._open_watched(node, inp.number, guard)
        except (sandbox.SandboxError, ValueError) as exc:
            if guard.reason is not None and guard.expired():
                raise deadline_error("while the sandbox was starting") from exc
            raise ApplicationError(f"sandbox could not start: {exc}", type="SandboxError") from exc
        bridge = SubcallBridge(self.deps, inp, self._blocking)
        try:
            result = await self._run_cell(cached.session, code, bridge, guard)
        except BaseException as exc:
            # Stopped (deadline, rlm abort, shutdown) or broken: a half-run session must not be reused.
            await asyncio.shield(self._blocking(cached.session.close))
            if guard.reason is not None and guard.expired():
                raise deadline_error("while the cell was running; it was stopped") from exc
            raise
        finally:
            guard.finish()
        error = result.traceback or (result.message if result.status != sandbox.CellStatus.OK else None)
        record = CellRecord(
            code=code,
            stdout=result.stdout,
            stderr=result.stderr,
            error=error,
            chars_cut=result.stdout_cut + result.stderr_cut,
            status=result.status,
            subcalls=result.subcalls,
            answer=result.answer.content if result.answer is not None else None,
            ready=bool(result.answer and result.answer.ready),
            unpicklable=result.unpicklable,
            children_after=inp.children_before + bridge.children,
        )
        out = await self._blocking(functools.partial(self._record, inp, result, record))
        if guard.keep():
            item = _Cached(cached.session, inp.number)
            await self._blocking(functools.partial(self.cache.put, node.node_id, item))
        else:
            await self._blocking(cached.session.close)  # stopped just as the cell finished
        log.info(
            "cell.finished",
            node_id=node.node_id,
            iteration=inp.iteration,
            index=inp.index,
            status=result.status,
            subcalls=result.subcalls,
            ms=round(result.duration_s * 1000),
        )
        return out

    async def _run_cell(
        self, session: sandbox.SandboxSession, code: str, bridge: SubcallBridge, guard: Guard
    ) -> sandbox.CellResult:
        cell = session.begin_cell(code)
        step = await self._blocking(cell.advance)
        while isinstance(step, sandbox.SubcallRequest):
            reply = await guard.wait(bridge.answer(step))
            step = await self._blocking(functools.partial(cell.advance, reply))
        return step

    def _record(self, inp: ExecuteInput, result: sandbox.CellResult, record: CellRecord) -> ExecuteOutput:
        node = inp.node
        with self.deps.sessions.begin() as session:
            if result.snapshot is not None:
                save_snapshot(
                    session,
                    node.node_id,
                    inp.number,
                    put_blob(session, result.snapshot),
                    keep=self.deps.settings.keep_snapshots,
                )
            upsert_node(
                session,
                node.node_id,
                run_id=node.run.run_id,
                kind=node.kind,
                depth=node.depth,
                parent_id=node.parent_id,
            )
            step = record_step(
                session,
                node.node_id,
                inp.iteration,
                StepKind.CELL,
                inp.index,
                summary=(record.stdout or record.error or "")[:200],
                duration_ms=round(result.duration_s * 1000),
                data=record.to_data(),
            )
            # The first write wins: a cell recorded meanwhile by another attempt is the one to report.
            return _output_of(session, CellRecord.from_data(step.data))

    @activity.defn(name="release_sandbox")
    async def release_sandbox(self, node: NodeInput) -> None:
        """An ended node's sandbox: close this worker's session and remove the node's containers
        (on the Docker engine this worker uses, whichever worker started them). Another worker that
        cached the node's session is left holding a closed container; it drops it on eviction."""
        running = self._running.get(node.node_id)
        if running is not None:
            # The node gave up on a cell still running here (its deadline, a cancellation).
            await running.stop("the node ended")
        await self._blocking(functools.partial(self.cache.drop, node.node_id))
        removed = 0
        if self.deps.settings.sandbox_backend == "docker":
            labels = {"run": node.run.run_id, "node": node.node_id}
            removed = await self._blocking(functools.partial(sandbox.reap, labels=labels))
        log.info("sandbox.released", containers=removed)


def _output_of(session: Session, record: CellRecord) -> ExecuteOutput:
    return ExecuteOutput(
        answer=texts.pack(session, record.answer) if record.answer is not None else None,
        ready=record.ready,
        children_after=record.children_after,
        error=record.error[:2000] if record.error is not None else None,
    )
