"""``AbortWatch``: a worker stops its model calls under a node ``rlm abort`` marked, within a second.

Temporal's cancel reaches a model call late: a leaf's call (a local activity) runs inside its
workflow's task, which takes in nothing new until the call returns or the task's heartbeat, 0.8 of the
task's timeout (24 s by default) later; a node's ``generate`` activity hears it with the next heartbeat
the SDK sends, up to 0.8 heartbeat timeouts (also 24 s by default) later (``activities.heartbeat``).
Meanwhile the call goes on and, if it returns, is charged. ``rlm abort`` therefore marks its target in
the store first (``store.request_abort``), as does an RLM node that records its end aborted after a
cancel made in Temporal alone (``activities.records``); while this worker has calls in flight it looks
for marks on their runs once a second, in one query, and cancels the calls under a marked node. The
call's reservation is released (nothing is charged) and its activity returns ``Outcome.ABORTED``; the
workflow then waits for Temporal's cancel, which follows, and ends through its usual cancellation path.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Collection, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.errors import RlmError
from orchestrator.ids import in_subtree
from orchestrator.store import abort_requests

log = structlog.get_logger(__name__)
T = TypeVar("T")
ABORT_POLL_S = 1.0


class CallAborted(RlmError):
    """A model call was stopped because an operator aborted ``marked``, the node or an ancestor."""

    def __init__(self, node_id: str, marked: str) -> None:
        super().__init__(f"the model call of {node_id} was stopped: {marked} was aborted by an operator")
        self.node_id = node_id
        self.marked = marked


@dataclass(eq=False)
class _Call:
    run_id: str
    node_id: str
    task: asyncio.Task[Any]
    marked: str | None = field(default=None)  # set when this watch cancels it


class AbortWatch:
    def __init__(self, sessions: sessionmaker[Session], every_s: float = ABORT_POLL_S) -> None:
        self._sessions = sessions
        self._every_s = every_s
        self._calls: set[_Call] = set()
        self._poller: asyncio.Task[None] | None = None
        self._store_failed = False

    async def call(self, run_id: str, node_id: str, work: Coroutine[Any, Any, T]) -> T:
        """Await ``work`` (a model call of ``node_id``); ``CallAborted`` if an abort mark stops it."""
        task = asyncio.ensure_future(work)
        call = _Call(run_id, node_id, task)
        self._calls.add(call)
        if self._poller is None or self._poller.done():
            # Its own context: not the first caller's activity and log bindings.
            self._poller = asyncio.get_running_loop().create_task(
                self._poll(), name="abort-watch", context=contextvars.Context()
            )
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            cancelled_here = current is not None and current.cancelling() > 0
            if call.marked is None or cancelled_here:
                raise
            raise CallAborted(node_id, call.marked) from None
        finally:
            self._calls.discard(call)

    async def close(self) -> None:
        """Stop looking (the worker stops; its calls are being cancelled with it)."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)

    async def _poll(self) -> None:
        while self._calls:
            await asyncio.sleep(self._every_s)
            calls = [c for c in self._calls if not c.task.done()]
            if not calls:
                continue
            try:
                marked = await asyncio.to_thread(self._marked, {c.run_id for c in calls})
            except Exception as exc:  # the store is down: the calls go on, Temporal's cancel still comes
                if not self._store_failed:
                    log.warning("abort_watch.store_failed", error=f"{type(exc).__name__}: {exc}"[:300])
                self._store_failed = True
                continue
            self._store_failed = False
            for call in calls:
                top = next((m for m in marked if in_subtree(call.node_id, m)), None)
                if top is not None and call.marked is None and not call.task.done():
                    call.marked = top
                    call.task.cancel()
                    log.info("model_call.aborted", run_id=call.run_id, node_id=call.node_id, marked=top)

    def _marked(self, run_ids: Collection[str]) -> list[str]:
        with self._sessions() as session:
            return abort_requests(session, run_ids)
