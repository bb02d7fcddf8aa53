"""``execute``: run one code cell in the node's sandbox session and bridge its sub-calls.

Runs in a worker thread (a sync activity): the sandbox blocks while the cell runs. Each sub-call of
the cell becomes the ``subcall`` Workflow Update on the cell's own node, sent through the worker's
event loop; its update id (node/iteration/cell/seq) makes a re-executed cell get the first answers.

Sessions live in a per-worker cache keyed by node. A worker that does not hold the node's session, or
whose session is behind the node (another worker ran the previous cell), restores the last snapshot
from the store. A cell whose step is already recorded is not run again (its effects are in the
snapshot and its sub-calls were answered).

A watcher thread heartbeats while the cell runs and stops the cell (closes the session, which removes
its container, and abandons a sub-call being waited on) when the run's deadline passes, when the
activity is cancelled (``rlm abort``, its timeout) or when the worker shuts down: the thread that waits
on the sandbox never outlives the activity with a container still running. Past the deadline the
activity fails ``DeadlinePassed`` (not retried; the node ends ``timed_out``) and starts no container.

A batched sub-call (``llm_query_batched``/``rlm_query_batched``) gets every answer that exists and the
workflow's ``failed_item`` marker in place of each failed child; a single ``llm_query``/``rlm_query``
whose child failed raises ``SubcallError`` in the cell, as does a refused call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.client import WorkflowHandle, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

import sandbox
from orchestrator.activities import texts
from orchestrator.activities.context import local_context
from orchestrator.activities.deps import Deps
from orchestrator.activities.model import CELL_KIND
from orchestrator.store import (
    find_step,
    get_blob,
    latest_snapshot,
    put_blob,
    record_step,
    save_snapshot,
    upsert_node,
)
from orchestrator.vocabulary import SubcallKind
from orchestrator.workflows.common import DEADLINE_PASSED, MEMO_CHARS
from orchestrator.workflows.node import RLMNode
from orchestrator.workflows.types import (
    INLINE_CHARS,
    ExecuteInput,
    ExecuteOutput,
    NodeInput,
    SubcallBatch,
    SubcallReply,
    Text,
    update_id,
)

log = structlog.get_logger(__name__)

# The server's refusal once a workflow run has received history.maxTotalUpdates Updates.
UPDATE_LIMIT = "limit on the total number of distinct updates"


def updates_exhausted(server_message: str) -> str:
    return (
        "this node has made as many sub-call requests in its current workflow run as the Temporal server "
        "allows (history.maxTotalUpdates); batch the prompts into llm_query_batched / rlm_query_batched "
        f"calls, or end this iteration: the node continues in a fresh run ({server_message.split('.')[0]})"
    )


HEARTBEAT_EVERY_S = 2.0
# How often the watcher looks at the deadline, cancellation and worker shutdown.
WATCH_EVERY_S = 0.25
# Prompts of one batch ride inline in the Update while they are this small in total; beyond, blobs.
BATCH_INLINE_CHARS = 32_000


@dataclass
class _Cached:
    session: sandbox.SandboxSession
    cell_no: int  # the last cell whose effects this session holds


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


class _Guard:
    """What a running cell holds that another thread may have to stop: its session and the sub-call
    it waits on. ``stop`` is final; once ``keep`` has cached the session it leaves it to the cache."""

    def __init__(self, deadline_epoch_s: float) -> None:
        self.deadline_epoch_s = deadline_epoch_s
        self.reason: str | None = None
        self._lock = threading.Lock()
        self._session: sandbox.SandboxSession | None = None
        self._calls: set[concurrent.futures.Future[Any]] = set()
        self._done = False
        self._kept = False

    def expired(self) -> bool:
        return time.time() >= self.deadline_epoch_s

    def watch(self, session: sandbox.SandboxSession) -> None:
        with self._lock:
            self._session = session
            stopped = self.reason is not None
        if stopped:
            session.close()

    def track(self, call: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._calls.add(call)
            stopped = self.reason is not None
        if stopped:
            call.cancel()

    def untrack(self, call: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._calls.discard(call)

    def stop(self, reason: str) -> None:
        """Abandon the cell: cancel the sub-call waited on, close the session (returns once its
        container is gone). A session already kept for the next cell is left to the cache."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
            if self._kept:
                return
            session, calls = self._session, list(self._calls)
        log.warning("cell.stopped", reason=reason, finished=self._done)
        for call in calls:
            call.cancel()
        if session is not None:
            session.close()

    def finish(self) -> None:
        with self._lock:
            self._done = True

    def keep(self, put: Callable[[], None]) -> bool:
        """Run ``put`` (cache the session) unless the cell was stopped; atomic with ``stop``."""
        with self._lock:
            if self.reason is not None:
                return False
            put()
            self._kept = True
            return True


def _deadline_error(when: str) -> ApplicationError:
    return ApplicationError(
        f"the run's deadline passed {when}; the node ends timed_out (rlm resume RUN --deadline S "
        "gives it more time)",
        type=DEADLINE_PASSED,
        non_retryable=True,
    )


class CellActivities:
    def __init__(self, deps: Deps, cache: SessionCache, limits: sandbox.SandboxLimits) -> None:
        self.deps = deps
        self.cache = cache
        self.limits = limits
        # The cell each node is running on this worker, so that release_sandbox can stop it.
        self._running: dict[str, _Guard] = {}
        self._running_lock = threading.Lock()

    def _open(self, node: NodeInput, cell_no: int) -> _Cached:
        """The node's session holding the effects of every cell before ``cell_no``."""
        cached = self.cache.take(node.node_id)
        if cached is not None and cached.cell_no == cell_no - 1:
            return cached
        if cached is not None:
            cached.session.close()
        with self.deps.sessions() as session:
            path = local_context(session, node, self.deps.context_dir)
            snap = latest_snapshot(session, node.node_id)
            state = get_blob(session, snap.blob_sha) if snap is not None and snap.cell < cell_no else None
            restored_cell = snap.cell if state is not None and snap is not None else 0
        limits = sandbox.SandboxLimits(
            **{**self.limits.__dict__, "cell_timeout_s": node.run.limits.cell_timeout_s}
        )
        sess = sandbox.open_session(
            backend="docker" if self.deps.settings.sandbox_backend == "docker" else "process",
            context_path=path,
            limits=limits,
            labels={**self.deps.sandbox_labels, "run": node.run.run_id, "node": node.node_id},
        )
        if state is not None:
            sess.restore(state)
        log.info("session.opened", node_id=node.node_id, restored_cell=restored_cell, cell_no=cell_no)
        return _Cached(sess, cell_no - 1)

    def _handler(self, inp: ExecuteInput, children: list[int], guard: _Guard) -> sandbox.SubcallHandler:
        """The cell's sub-call bridge; ``children`` collects how many children each call started."""
        handle = self.deps.client.get_workflow_handle(inp.node.node_id)

        def on_subcall(req: sandbox.SubcallRequest) -> list[str]:
            total = sum(len(p) for p in req.prompts)
            limit = INLINE_CHARS if total > BATCH_INLINE_CHARS else BATCH_INLINE_CHARS
            if all(len(p) <= limit for p in req.prompts):
                prompts = [Text(inline=p) for p in req.prompts]
            else:
                with self.deps.sessions.begin() as session:
                    prompts = [texts.pack(session, p, limit) for p in req.prompts]
            titles = [p.strip().split("\n", 1)[0][:MEMO_CHARS] for p in req.prompts]
            batch = SubcallBatch(
                inp.iteration, inp.cell, req.seq, SubcallKind(req.kind), prompts, req.model, titles
            )
            uid = update_id(inp.node.node_id, inp.iteration, inp.cell, req.seq)
            started = time.monotonic()
            future = asyncio.run_coroutine_threadsafe(_ask(handle, batch, uid), self.deps.loop)
            guard.track(future)
            try:
                reply = future.result()
            except RPCError as exc:
                if exc.status == RPCStatusCode.FAILED_PRECONDITION and UPDATE_LIMIT in exc.message:
                    # Retrying the cell would be refused the same way: the model must change course.
                    raise sandbox.SubcallError(updates_exhausted(exc.message)) from exc
                raise
            finally:
                guard.untrack(future)
            children.append(reply.started)
            log.debug(
                "subcall.answered",
                update_id=uid,
                prompts=len(prompts),
                ms=round((time.monotonic() - started) * 1000, 1),
            )
            if reply.error is not None:
                raise sandbox.SubcallError(reply.error)
            if reply.failed and not req.batched:
                # A single llm_query/rlm_query has no other answer to keep: it raises, as it always did.
                marker = reply.answers[reply.failed[0]].inline or ""
                raise sandbox.SubcallError(marker.removeprefix("Error: "))
            if all(a.inline is not None for a in reply.answers):
                return [a.inline or "" for a in reply.answers]
            with self.deps.sessions() as session:
                return [texts.unpack(session, a) for a in reply.answers]

        return on_subcall

    @activity.defn(name="execute")
    def execute(self, inp: ExecuteInput) -> ExecuteOutput:
        node = inp.node
        with self.deps.sessions.begin() as session:
            done = find_step(session, node.node_id, inp.iteration, CELL_KIND, inp.cell)
            if done is not None:
                return _output_of(session, done.data or {})
            code = texts.unpack(session, inp.code)
        guard = _Guard(node.run.deadline_epoch_s)
        if guard.expired():
            raise _deadline_error("before the cell started")
        with self._running_lock:
            self._running[node.node_id] = guard
        try:
            return self._execute(inp, code, guard)
        finally:
            with self._running_lock:
                if self._running.get(node.node_id) is guard:
                    del self._running[node.node_id]

    def _execute(self, inp: ExecuteInput, code: str, guard: _Guard) -> ExecuteOutput:
        node = inp.node
        stop = threading.Event()
        children: list[int] = []
        watcher = threading.Thread(
            target=contextvars.copy_context().run, args=(_watch, stop, guard), daemon=True
        )
        watcher.start()
        try:
            try:
                cached = self._open(node, inp.cell_no)
            except (sandbox.SandboxError, ValueError) as exc:
                if guard.reason is not None and guard.expired():
                    raise _deadline_error("while the sandbox was starting") from exc
                raise ApplicationError(f"sandbox could not start: {exc}", type="SandboxError") from exc
            guard.watch(cached.session)
            try:
                result = cached.session.execute(code, self._handler(inp, children, guard))
            except BaseException as exc:
                # Stopped (deadline, rlm abort, shutdown) or broken: a half-run session must not be reused.
                cached.session.close()
                if guard.reason is not None and guard.expired():
                    raise _deadline_error("while the cell was running; it was stopped") from exc
                raise
        finally:
            stop.set()
            guard.finish()
        answer_text = result.answer.content if result.answer is not None else None
        error = result.traceback or (result.message if result.status != "ok" else None)
        data = {
            "code": code,
            "stdout": result.stdout,
            "stderr": result.stderr,
            "error": error,
            "chars_cut": result.stdout_cut + result.stderr_cut,
            "status": result.status,
            "subcalls": result.subcalls,
            "answer": answer_text,
            "ready": bool(result.answer and result.answer.ready),
            "unpicklable": result.unpicklable,
            "children_after": inp.children_before + sum(children),
        }
        with self.deps.sessions.begin() as session:
            if result.snapshot is not None:
                save_snapshot(session, node.node_id, inp.cell_no, put_blob(session, result.snapshot))
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
                CELL_KIND,
                inp.cell,
                summary=(result.stdout or error or "")[:200],
                duration_ms=round(result.duration_s * 1000),
                data=data,
            )
            out = _output_of(session, step.data or {})
        if not guard.keep(lambda: self.cache.put(node.node_id, _Cached(cached.session, inp.cell_no))):
            cached.session.close()  # stopped just as the cell finished
        log.info(
            "cell.finished",
            node_id=node.node_id,
            iteration=inp.iteration,
            cell=inp.cell,
            status=result.status,
            subcalls=result.subcalls,
            ms=round(result.duration_s * 1000),
        )
        return out

    @activity.defn(name="release_sandbox")
    def release_sandbox(self, node: NodeInput) -> None:
        """An ended node's sandbox: close this worker's session and remove the node's containers
        (on the Docker engine this worker uses, whichever worker started them). Another worker that
        cached the node's session is left holding a closed container; it drops it on eviction."""
        with self._running_lock:
            running = self._running.get(node.node_id)
        if running is not None:
            # The node gave up on a cell still running here (its deadline, a cancellation).
            running.stop("the node ended")
        self.cache.drop(node.node_id)
        removed = 0
        if self.deps.settings.sandbox_backend == "docker":
            removed = sandbox.reap(labels={"run": node.run.run_id, "node": node.node_id})
        log.info("sandbox.released", containers=removed)


async def _ask(handle: WorkflowHandle[Any, Any], batch: SubcallBatch, uid: str) -> SubcallReply:
    """The ``subcall`` Update. A stopped cell cancels the wait, and the SDK then raises its own error:
    ending the task cancelled instead keeps asyncio from logging an exception nobody will retrieve."""
    try:
        reply: SubcallReply = await handle.execute_update(RLMNode.subcall, batch, id=uid)
    except WorkflowUpdateRPCTimeoutOrCancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError from exc
        raise
    return reply


def _output_of(session: Session, data: dict[str, Any]) -> ExecuteOutput:
    answer = data.get("answer")
    text = texts.pack(session, answer) if isinstance(answer, str) else None
    error = data.get("error")
    return ExecuteOutput(
        answer=text,
        ready=bool(data.get("ready")),
        children_after=int(data["children_after"]),
        error=error[:2000] if isinstance(error, str) else None,
    )


def _watch(stop: threading.Event, guard: _Guard) -> None:
    """Heartbeat while the cell runs; stop it at the deadline, on cancellation or worker shutdown."""
    next_beat = time.monotonic() + HEARTBEAT_EVERY_S
    while not stop.wait(WATCH_EVERY_S):
        if guard.expired():
            guard.stop("the run's deadline passed")
            return
        if activity.is_cancelled():
            guard.stop("the activity was cancelled")
            return
        if activity.is_worker_shutdown():
            guard.stop("the worker is shutting down")
            return
        if time.monotonic() >= next_beat:
            activity.heartbeat()
            next_beat = time.monotonic() + HEARTBEAT_EVERY_S
