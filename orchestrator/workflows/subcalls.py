"""``Subcalls``: an RLM node's sub-call dispatch, the work behind its ``subcall`` Workflow Update.

A running cell's ``llm_query``/``rlm_query`` (batched or not) reaches the node as one Update (update id
= node/iteration/cell/seq). ``handle`` checks ``max_subcalls``, numbers the children (``<node>.<n>``),
starts them — an ``RLMNode`` child for ``rlm_query`` within the depth limit, else a leaf: a ``Leaf``
child workflow, or an inline leaf (``leaf_mode=inline``, or ``auto`` for a wide batch) — at most
``max_concurrency`` at once, and replies with every answer that exists (a child that ended without
one leaves a ``failed_item`` marker in its place). A re-executed cell re-sends the same update ids and
gets the first reply back without starting or paying for anything again.

While an operator's pause is requested no child starts: the sub-call waits (the node shows
``paused``). ``pause``, ``resume`` and ``abort`` are passed on to running RLM children, so one signal
reaches the whole subtree. Deterministic code only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.exceptions import (
    ChildWorkflowError,
    FailureError,
    TerminatedError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ChildWorkflowHandle, ParentClosePolicy

from orchestrator.vocabulary import NodeKind, Status, SubcallKind
from orchestrator.workflows import common, details
from orchestrator.workflows.history_room import (
    CHILD_WORKFLOW,
    INLINE_LEAF,
    HistoryCost,
    HistoryRoom,
    encoded_bytes,
    subcall_cost,
)
from orchestrator.workflows.inline import InlineLeaves
from orchestrator.workflows.leaf import Leaf
from orchestrator.workflows.operator import OperatorSignals, Released, await_operator
from orchestrator.workflows.types import (
    FAILED_REASON_CHARS,
    ChildState,
    LeafInput,
    NodeEvent,
    NodeInput,
    NodeResult,
    NodeState,
    SubcallBatch,
    SubcallReply,
    Text,
    child_id,
    failed_item,
    text_sha256,
    update_id,
)

HELD_MESSAGE = "paused by an operator (rlm pause): new sub-calls wait for `rlm resume`"
# A batched call's reply is one payload, which the Temporal server refuses past 2 MB
# (limit.blobSize.error): the node's workflow task then fails on every retry. Past this many bytes of
# answers the reply names their blobs instead, and a failure's reason keeps its first
# BIG_REPLY_REASON_CHARS characters; with those (BLOB_NAME_BYTES and about 200 bytes an item) a batch
# of MAX_BATCH stays near 1 MB.
REPLY_INLINE_BYTES = 1_000_000
BIG_REPLY_REASON_CHARS = 100
MAX_BATCH = 5_000
# RlmCost follows finished sub-calls during a long cell at most this often (each update is a history
# event; a 1,000-way fan-out would otherwise add 1,000).
COST_EVERY_S = 5.0
# How often a sub-call whose id an earlier run of its node left running asks again.
ORPHAN_RETRY = timedelta(seconds=1)

# Shows the node's status (state, search attribute, store) — the node's own ``show``.
Show = Callable[[Status, "str | None"], Awaitable[None]]
# Tells the node its state changed (its Web UI details follow).
Changed = Callable[[], None]
RlmChild = ChildWorkflowHandle[Any, NodeResult]


class Subcalls:
    def __init__(
        self, inp: NodeInput, signals: OperatorSignals, state: NodeState, show: Show, changed: Changed
    ) -> None:
        self._inp = inp
        self._signals = signals
        self._state = state
        self._show = show
        self._changed = changed
        self._slots = asyncio.Semaphore(max(1, inp.run.limits.max_concurrency))
        self._replies: dict[str, SubcallReply] = {}
        # RLM children started and not yet returned: where pause, resume and abort are passed on.
        self._rlm_children: dict[str, RlmChild] = {}
        self._held_status = asyncio.Lock()  # one held-status write at a time: the store's last is current
        self._cost_shown_at = workflow.time()
        self._positions = {child.node_id: i for i, child in enumerate(state.child_states)}
        self.tally = details.ChildTally.of(state.child_states)  # what the node's details show
        self.history = HistoryRoom(inp.run.limits.max_run_events, inp.run.limits.max_run_bytes)
        self.inline = InlineLeaves(signals, state, changed)

    async def handle(self, batch: SubcallBatch) -> SubcallReply:
        key = update_id(self._inp.node_id, batch.iteration, batch.index, batch.seq)
        known = self._replies.get(key)
        if known is not None:
            return known
        limit = self._inp.run.limits.max_subcalls
        wanted = len(batch.prompts)
        made = self._state.children
        shape = INLINE_LEAF if self._inline(batch) else CHILD_WORKFLOW
        cost = subcall_cost(shape, batch.prompts, batch.titles)
        info = workflow.info()
        if made + wanted > limit:
            reply = SubcallReply(
                error=(
                    f"max_subcalls reached: this node may make {limit} sub-calls, has made {made}, "
                    f"and this call asks for {wanted} more; batch several questions into one prompt or use "
                    "bigger chunks"
                )
            )
        elif wanted > MAX_BATCH:
            reply = SubcallReply(
                error=(
                    f"a batched call takes at most {MAX_BATCH:,} prompts and this one has {wanted:,}; split "
                    "them over several calls, or put several questions in each prompt"
                )
            )
        elif full := self.history.refusal(
            info.get_current_history_length(), info.get_current_history_size(), cost, wanted
        ):
            reply = SubcallReply(error=full)
        else:
            self._state.children += wanted
            results = await asyncio.gather(
                *(self._child(made + 1 + i, batch, i, cost) for i in range(wanted))
            )
            reply = dataclasses.replace(_reply(results), started=wanted)
        self._replies[key] = reply
        return reply

    async def pass_on(self, signal: str) -> None:
        """Signal every running RLM child (leaves are single model calls: nothing to hold)."""
        await asyncio.gather(*(_tell(child, signal) for child in list(self._rlm_children.values())))

    def _as_node(self, batch: SubcallBatch) -> bool:
        """Whether the batch's sub-calls run as RLM nodes (``rlm_query`` within the depth limit)."""
        return batch.kind == SubcallKind.RLM and self._inp.depth + 1 <= self._inp.run.limits.max_depth

    def _inline(self, batch: SubcallBatch) -> bool:
        return not self._as_node(batch) and self._inp.run.limits.leaf_mode.runs_inline(len(batch.prompts))

    async def _child(self, number: int, batch: SubcallBatch, index: int, cost: HistoryCost) -> NodeResult:
        cid = child_id(self._inp.node_id, number)
        self._child_state(ChildState(node_id=cid, status=Status.RUNNING))
        result = await self._start_child(cid, batch, index)
        self.history.ended(cost)
        state = self._state
        self._child_state(ChildState(node_id=cid, status=result.status, cost_usd=result.cost_usd))
        state.children_cost_usd = str(Decimal(state.children_cost_usd) + Decimal(result.cost_usd))
        if result.answer is None:
            state.last_error = result.error or f"sub-call {cid} ended {result.status}"
        now = workflow.time()
        if now - self._cost_shown_at >= COST_EVERY_S:
            self._cost_shown_at = now
            common.set_status(state.status, common.total_cost(state))
        return result

    def _child_state(self, child: ChildState) -> None:
        states = self._state.child_states
        position = self._positions.get(child.node_id)
        if position is None:
            self._positions[child.node_id] = len(states)
            self.tally.replace(None, child)
            states.append(child)
        else:
            self.tally.replace(states[position], child)
            states[position] = child
        self._changed()

    async def _start_child(self, cid: str, batch: SubcallBatch, index: int) -> NodeResult:
        async with self._slots:
            refused = await self._unless_paused(cid)
            if refused is not None:
                return refused
            if common.seconds_left(self._inp.run) <= 0:
                # Slots free up at the deadline, as the calls holding them time out: what waited for one
                # is not started then (a wide fan-out would start its whole queue only to end it).
                why = f"sub-call {cid} was not started: the run's deadline passed while it waited for a slot"
                return NodeResult(node_id=cid, status=Status.TIMED_OUT, answer=None, error=why)
            while True:
                try:
                    return await self._start_once(cid, batch, index)
                except WorkflowAlreadyStartedError:
                    # A child of this id from an earlier run of this node (terminated, then restarted):
                    # it is closing (its parent's close requested its cancellation) or was left behind.
                    # This node's own starts never collide: a re-sent update gets its first reply.
                    if common.seconds_left(self._inp.run) <= 0:
                        why = f"sub-call {cid} was not started: a workflow of that id ran until the deadline"
                        return NodeResult(node_id=cid, status=Status.TIMED_OUT, answer=None, error=why)
                    await workflow.sleep(ORPHAN_RETRY)

    async def _start_once(self, cid: str, batch: SubcallBatch, index: int) -> NodeResult:
        inp = self._inp
        run = inp.run
        prompt = batch.prompts[index]
        model = batch.model or run.sub_model
        depth = inp.depth + 1
        title = batch.titles[index] if index < len(batch.titles) else prompt.preview
        memo = common.memo(title)
        summary = memo["query"]
        attributes = common.search_attributes(run, depth, Status.RUNNING)
        as_node = self._as_node(batch)
        try:
            if as_node:
                node = NodeInput(
                    run=run, node_id=cid, parent_id=inp.node_id, depth=depth, kind=NodeKind.RLM,
                    model=model, context=prompt,
                )  # fmt: skip
                child = await workflow.start_child_workflow(
                    "RLMNode",
                    node,
                    result_type=NodeResult,
                    id=cid,
                    search_attributes=attributes,
                    memo=memo,
                    static_summary=summary,
                    static_details=details.static_details(node),
                    parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                    task_timeout=common.task_timeout(run),
                )
                return await self._follow(child)
            leaf = LeafInput(
                run=run, node_id=cid, parent_id=inp.node_id, depth=depth, model=model, prompt=prompt
            )
            if self._inline(batch):
                return await self.inline.run(leaf)
            return await workflow.execute_child_workflow(
                Leaf.run,
                leaf,
                id=cid,
                search_attributes=attributes,
                memo=memo,
                static_summary=summary,
                static_details=details.static_details(leaf),
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                task_timeout=common.task_timeout(run),
            )
        except ChildWorkflowError as err:
            if isinstance(err.cause, TerminatedError):
                return await self._terminated(cid, depth, NodeKind.RLM if as_node else NodeKind.LEAF)
            return NodeResult(
                node_id=cid,
                status=Status.FAILED,
                answer=None,
                error=f"sub-call {cid} failed: {err.cause or err}",
            )

    async def _terminated(self, cid: str, depth: int, kind: NodeKind) -> NodeResult:
        """A child terminated in Temporal ran no code to record its end: its parent records it, so the
        store does not show it running for good (its own children are cancelled and record theirs).

        Its holds stay: a model call it had in flight runs on in the worker and settles what it cost
        (a leaf's then records the node completed, which it did, though its answer reached nobody)."""
        inp = self._inp
        why = f"sub-call {cid} was terminated in Temporal (`temporal workflow terminate`)"
        event = NodeEvent(
            run_id=inp.run.run_id, node_id=cid, parent_id=inp.node_id, depth=depth, kind=kind,
            status=Status.ABORTED, tenant=inp.run.tenant, error=why, release_holds=False,
        )  # fmt: skip
        await common.record(event)
        return NodeResult(node_id=cid, status=Status.ABORTED, answer=None, error=why)

    async def _unless_paused(self, cid: str) -> NodeResult | None:
        """While a pause is requested no child starts: wait for ``resume`` (None: start it now).

        ``abort`` or the run's deadline while waiting ends the sub-call unstarted, with the reason."""
        if not self._signals.pause_requested:
            return None
        self._state.held_subcalls += 1
        await self._show_held()
        released = await await_operator(self._signals, self._inp.run, resumed_after=None)
        self._state.held_subcalls -= 1
        if released == Released.ABORTED:
            # The node holds at its next step and ends aborted there: it stays shown as paused.
            why = f"sub-call {cid} was not started: the node was aborted while paused"
            return NodeResult(node_id=cid, status=Status.ABORTED, answer=None, error=why)
        await self._show_held()
        if released == Released.DEADLINE:
            why = f"sub-call {cid} was not started: the node stayed paused until the run's deadline"
            return NodeResult(node_id=cid, status=Status.TIMED_OUT, answer=None, error=why)
        return None

    async def _show_held(self) -> None:
        """The node shows ``paused`` while any sub-call is held, ``running`` again when none is."""
        async with self._held_status:
            held = self._state.held_subcalls > 0
            if held == (self._state.status == Status.PAUSED):
                return
            if held:
                await self._show(Status.PAUSED, HELD_MESSAGE)
            else:
                await self._show(Status.RUNNING, None)

    async def _follow(self, child: RlmChild) -> NodeResult:
        """Wait for a started RLM child, passing pause, resume and abort on to it meanwhile."""
        self._rlm_children[child.id] = child
        try:
            if self._signals.pause_requested:
                # The pause came while the child was being started, so the signals passed on missed it.
                await _tell(child, "pause")
            return await child
        finally:
            del self._rlm_children[child.id]


async def _tell(child: RlmChild, signal: str) -> None:
    # A child that ended before the signal reached it has nothing left to hold or release.
    with contextlib.suppress(FailureError):
        await child.signal(signal)


def _reply(results: list[NodeResult]) -> SubcallReply:
    """Every answer that exists, and a marker in the place of each child that ended without one.

    A reply past ``REPLY_INLINE_BYTES`` names its answers' blobs instead of carrying them (each child
    stored its answer under the text's hash before it returned) and cuts failure reasons short."""
    reply = _answers(results, FAILED_REASON_CHARS, by_blob=False)
    if sum(encoded_bytes(answer) for answer in reply.answers) <= REPLY_INLINE_BYTES:
        return reply
    return _answers(results, BIG_REPLY_REASON_CHARS, by_blob=True)


def _answers(results: list[NodeResult], reason_chars: int, *, by_blob: bool) -> SubcallReply:
    answers: list[Text] = []
    failed: list[int] = []
    for index, result in enumerate(results):
        answer = result.answer
        if answer is None:
            failed.append(index)
            answers.append(
                Text(inline=failed_item(result.node_id, result.status, result.error, reason_chars))
            )
        elif by_blob and answer.inline is not None:
            answers.append(Text(blob=text_sha256(answer.inline)))
        else:
            answers.append(answer)
    return SubcallReply(answers=answers, failed=failed)
