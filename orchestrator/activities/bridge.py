"""``SubcallBridge``: one cell's sub-calls become ``subcall`` Workflow Updates on the cell's own node.

For each ``SubcallRequest`` the sandbox hands back, the bridge packs the prompts into ``Text`` (inline
while a batch is small, blobs in the store beyond), sends the Update under a deterministic id
(``update_id``: a re-executed cell re-asks with the same id and gets the first answers), awaits the
reply on the event loop (no thread waits), and unpacks the answers for the cell. Refusals come back
as ``SubcallRefused`` (the cell then raises ``SubcallError``): the node's limits, the server's Update
limit, a single call whose child failed. A batched call instead gets every answer that exists and
the workflow's ``failed_item`` marker in place of each failed child.

``remember(text)`` arrives the same way (a request of kind ``SubcallKind.NOTE``, one prompt) and never
reaches the workflow: the note goes to the store, whose unique key (node, iteration, cell, call) is
the idempotency record, so a cell that runs again keeps its notes once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import structlog
from temporalio.client import WorkflowHandle, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

import sandbox
from orchestrator.activities import texts
from orchestrator.activities.deps import Deps
from orchestrator.store.sessions import add_note
from orchestrator.vocabulary import SubcallKind
from orchestrator.workflows.common import MEMO_CHARS
from orchestrator.workflows.node import RLMNode
from orchestrator.workflows.types import (
    INLINE_CHARS,
    ExecuteInput,
    SubcallBatch,
    SubcallReply,
    Text,
    update_id,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")
# Runs a blocking call (a store read or write) off the event loop.
Blocking = Callable[[Callable[[], T]], Awaitable[T]]

# The server's refusal once a workflow run has received history.maxTotalUpdates Updates.
UPDATE_LIMIT = "limit on the total number of distinct updates"
# Prompts of one batch ride inline in the Update while they are this small in total; beyond, blobs.
BATCH_INLINE_CHARS = 32_000
# The SDK types an update handler decorated with options as returning its coroutine, not what the
# coroutine returns; the Update's result is the SubcallReply.
SUBCALL = cast("UpdateMethodMultiParam[[Any, SubcallBatch], SubcallReply]", RLMNode.subcall)


def updates_exhausted(server_message: str) -> str:
    return (
        "this node has made as many sub-call requests in its current workflow run as the Temporal server "
        "allows (history.maxTotalUpdates); batch the prompts into llm_query_batched / rlm_query_batched "
        f"calls, or end this iteration: the node continues in a fresh run ({server_message.split('.')[0]})"
    )


class SubcallBridge:
    """The sub-calls of one cell. ``children`` counts the children its calls started."""

    def __init__(self, deps: Deps, inp: ExecuteInput, blocking: Blocking[Any]) -> None:
        self._deps = deps
        self._inp = inp
        self._blocking = blocking
        self._handle: WorkflowHandle[Any, Any] = deps.client.get_workflow_handle(inp.node.node_id)
        self.children = 0

    async def answer(self, req: sandbox.SubcallRequest) -> sandbox.SubcallAnswer:
        """The answers for the cell, or the refusal it raises as ``SubcallError``. Anything else that
        goes wrong (the Update could not be sent) raises here: the cell is abandoned and the activity
        retried."""
        inp = self._inp
        uid = update_id(inp.node.node_id, inp.iteration, inp.index, req.seq)
        if req.kind == SubcallKind.NOTE:
            return await self._remember(req.prompts, uid)
        batch = SubcallBatch(
            iteration=inp.iteration,
            index=inp.index,
            seq=req.seq,
            kind=req.kind,
            prompts=await self._pack(req.prompts),
            model=req.model,
            titles=[p.strip().split("\n", 1)[0][:MEMO_CHARS] for p in req.prompts],
        )
        started = time.monotonic()
        reply = await self._ask(batch, uid)
        self.children += reply.started
        log.debug(
            "subcall.answered",
            update_id=uid,
            prompts=len(req.prompts),
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        if reply.error is not None:
            return sandbox.SubcallRefused(reply.error)
        if reply.failed and not req.batched:
            # A single llm_query/rlm_query has no other answer to keep: it raises, as it always did.
            marker = reply.answers[reply.failed[0]].inline or ""
            return sandbox.SubcallRefused(marker.removeprefix("Error: "))
        return await self._unpack(reply.answers)

    async def _remember(self, texts_: list[str], key: str) -> sandbox.SubcallAnswer:
        turn = self._inp.node.session
        if turn is None:
            return sandbox.SubcallRefused("remember() keeps notes of a session's turns; this run is not one")

        def keep() -> None:
            with self._deps.sessions.begin() as session:
                for text in texts_:
                    add_note(session, turn.session_id, turn.turn, text, key=key)

        await self._blocking(keep)
        return ["" for _ in texts_]

    async def _ask(self, batch: SubcallBatch, uid: str) -> SubcallReply:
        try:
            reply: SubcallReply = await self._handle.execute_update(SUBCALL, batch, id=uid)
        except RPCError as exc:
            if exc.status == RPCStatusCode.FAILED_PRECONDITION and UPDATE_LIMIT in exc.message:
                # Retrying the cell would be refused the same way: the model must change course.
                return SubcallReply(error=updates_exhausted(exc.message))
            raise
        except WorkflowUpdateRPCTimeoutOrCancelledError as exc:
            # A stopped cell cancels the wait and the SDK raises its own error: report the cancellation.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from exc
            raise
        return reply

    async def _pack(self, prompts: list[str]) -> list[Text]:
        total = sum(len(p) for p in prompts)
        limit = INLINE_CHARS if total > BATCH_INLINE_CHARS else BATCH_INLINE_CHARS
        if all(len(p) <= limit for p in prompts):
            return [Text(inline=p) for p in prompts]

        def store() -> list[Text]:
            with self._deps.sessions.begin() as session:
                return [texts.pack(session, p, limit) for p in prompts]

        packed: list[Text] = await self._blocking(store)
        return packed

    async def _unpack(self, answers: list[Text]) -> list[str]:
        if all(a.inline is not None for a in answers):
            return [a.inline or "" for a in answers]

        def load() -> list[str]:
            with self._deps.sessions() as session:
                return [texts.unpack(session, a) for a in answers]

        unpacked: list[str] = await self._blocking(load)
        return unpacked
