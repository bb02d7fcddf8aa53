"""``RLMNode``: the root and every recursive sub-call of an RLM run.

Per iteration: ``generate`` (the model writes code), then ``execute`` once per code block (the cell
runs in the node's sandbox session). Sub-calls from a running cell arrive as the ``subcall`` Workflow
Update (sent by the ``execute`` activity, update id = node/iteration/cell/seq); the handler starts one
child workflow per prompt with a readable id (``<run>/0.3.1``), at most ``max_concurrency`` at once,
and returns the answers to the waiting cell. A re-executed cell re-sends the same update ids and gets
the first answers back without starting or paying for anything again.

A batched call returns every answer that exists: an item whose child ended without one (failed,
timed out, aborted) holds the ``failed_item`` marker (``Error: sub-call <id> ended <status>: <reason>``)
instead; a single ``llm_query``/``rlm_query`` whose child ended so raises in the cell.

Limits: ``max_iterations`` (then one forced final answer), ``max_subcalls`` (the call raises in the
cell), the run's absolute deadline (the node ends ``timed_out`` keeping any partial answer; a cell
still running then is stopped and not retried), budgets (``paused_budget`` until a ``resume`` or
``abort`` signal; a ``resume`` that arrived while the refused call was running counts).

Operators: the ``pause`` signal holds the node as ``paused`` before its next step (a model call or a
cell) until ``resume``; while its pause is requested the node starts no child (a sub-call asked for
by the running cell waits, the node shows ``paused``), and it passes ``pause``, ``resume`` and
``abort`` on to its running RLM children, so one signal reaches the whole subtree. Cancelling the
workflow (``rlm abort``) ends it ``aborted``: the store and the search attributes say so, and its
children (started with ``ParentClosePolicy.REQUEST_CANCEL``) are cancelled in turn. See
docs/operations.md.

However a node that ran a cell ends (completed, failed, timed out, aborted), it removes its sandbox
containers last (``release_sandbox``); a node that never ran a cell skips that activity.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ChildWorkflowError, FailureError
from temporalio.workflow import ChildWorkflowHandle, ParentClosePolicy

from orchestrator.workflows import common
from orchestrator.workflows.leaf import STEP_FAILED, Leaf, classify_failure, leaf_event, start_leaf_call
from orchestrator.workflows.types import (
    ABORTED,
    COMPLETED,
    FAILED,
    LEAF_INLINE,
    PAUSED,
    PAUSED_BUDGET,
    RUNNING,
    TIMED_OUT,
    Carry,
    ChildState,
    ExecuteInput,
    ExecuteOutput,
    GenerateInput,
    GenerateOutput,
    LeafCallOutput,
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
    update_id,
)

GENERATE_TIMEOUT_S = 600.0
# A cell is retried when its worker dies (heartbeat timeout) or the sandbox fails to start; cell
# errors in the user's code are results, not failures.
EXECUTE_RETRY = RetryPolicy(maximum_attempts=10)
RELEASE_TIMEOUT_S = 60.0
HELD_MESSAGE = "paused by an operator (rlm pause): new sub-calls wait for `rlm resume`"
# RlmCost follows finished sub-calls during a long cell at most this often (each update is a history
# event; a 1,000-way fan-out would otherwise add 1,000).
COST_EVERY_S = 5.0


@workflow.defn(name="RLMNode")
class RLMNode:
    @workflow.init
    def __init__(self, inp: NodeInput) -> None:
        self._inp = inp
        self._slots = asyncio.Semaphore(max(1, inp.run.limits.max_concurrency))
        self._status = RUNNING
        self._message: str | None = None
        self._iteration = 0
        self._subcalls = 0
        self._children = 0
        self._cost = Decimal(0)
        self._partial: Text | None = None
        self._replies: dict[str, SubcallReply] = {}
        # Counts `resume` signals. A hold ends on one that came after the held step started: a resume
        # sent while a refused call was still running is not lost.
        self._resumes = 0
        self._abort = False
        self._pause_requested = False
        # Inline leaves in flight, by node id.
        self._inline: dict[str, tuple[LeafInput, workflow.ActivityHandle[LeafCallOutput]]] = {}
        self._budget_holds = 0
        self._step = ""
        self._last_error: str | None = None
        self._child_states: dict[str, ChildState] = {}
        self._children_cost = Decimal(0)
        # RLM children started and not yet returned: where pause, resume and abort are passed on.
        self._rlm_children: dict[str, ChildWorkflowHandle[RLMNode, NodeResult]] = {}
        self._held = 0  # sub-calls waiting for the pause to be lifted
        self._held_status = asyncio.Lock()
        self._cost_shown_at = workflow.time()
        if inp.carry is not None:
            self._iteration = inp.carry.iteration
            self._subcalls = inp.carry.subcalls
            self._children = inp.carry.children
            self._cost = Decimal(inp.carry.cost_usd)
            self._partial = inp.carry.partial
        # Whether this node may have sandbox containers to remove when it ends.
        self._sandbox_used = inp.carry is not None and inp.carry.cell_no > 0

    # --- operator controls and live state -----------------------------------------------------

    # Each signal is passed on once, when it changes this node's state: an operator who signals
    # every node of a tree and the parents passing it on then cost a few idempotent duplicates.

    @workflow.signal
    async def resume(self) -> None:
        lifted = self._pause_requested
        self._resumes += 1
        self._pause_requested = False
        if lifted:
            await self._pass_on("resume")

    @workflow.signal
    async def abort(self) -> None:
        if self._abort:
            return
        self._abort = True
        await self._pass_on("abort")

    @workflow.signal
    async def pause(self) -> None:
        if self._pause_requested:
            return
        self._pause_requested = True
        await self._pass_on("pause")

    async def _pass_on(self, signal: str) -> None:
        """Signal every running RLM child (leaves are single model calls: nothing to hold)."""
        await asyncio.gather(*(_tell(child, signal) for child in list(self._rlm_children.values())))

    @workflow.query
    def state(self) -> NodeState:
        return NodeState(
            self._inp.node_id,
            self._status,
            self._iteration,
            self._subcalls,
            self._children,
            str(self._cost),
            self._message,
            step=self._step,
            last_error=self._last_error,
            children_cost_usd=str(self._children_cost),
            child_states=list(self._child_states.values()),
            held_subcalls=self._held,
        )

    # --- the loop ------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: NodeInput) -> NodeResult:
        try:
            return await self._run(inp)
        except asyncio.CancelledError:
            # `rlm abort` (or a cancelled parent): say so everywhere, free the sandbox, then end
            # cancelled; children still running are cancelled by the server (REQUEST_CANCEL).
            await self._aborted()
            raise

    async def _aborted(self) -> None:
        reason = "aborted by an operator (workflow cancelled)"
        self._status, self._message, self._step = ABORTED, reason, "done"
        common.set_status(ABORTED, float(self._cost + self._children_cost))
        await common.record(self._event(ABORTED, self._partial, reason))
        # Inline leaves have no workflow of their own to be cancelled with: stop their calls, say so.
        in_flight = [self._inline[leaf_id] for leaf_id in sorted(self._inline)]
        for _, call in in_flight:
            call.cancel()
        for leaf, _ in in_flight:
            await common.record(leaf_event(leaf, ABORTED, error=reason))
        await self._release_sandbox()

    async def _release_sandbox(self) -> None:
        """Remove the node's sandbox containers: whatever the ending, none outlives its node."""
        if not self._sandbox_used:
            return
        await workflow.execute_activity(
            common.RELEASE_SANDBOX,
            self._inp,
            start_to_close_timeout=timedelta(seconds=RELEASE_TIMEOUT_S),
            retry_policy=common.STORE_RETRY,
        )

    async def _run(self, inp: NodeInput) -> NodeResult:
        if inp.carry is None:
            await common.record(self._event(RUNNING))
        limits = inp.run.limits
        cell_no = inp.carry.cell_no if inp.carry else 0
        first = self._iteration + 1
        for iteration in range(first, limits.max_iterations + 2):
            if iteration > first and self._should_continue_as_new(iteration - first):
                # Between iterations no cell runs and no sub-call is pending: the history can restart.
                carry = Carry(
                    iteration - 1, cell_no, self._subcalls, self._children, str(self._cost), self._partial
                )
                workflow.continue_as_new(dataclasses.replace(inp, carry=carry))
            self._iteration = iteration
            forced = iteration > limits.max_iterations
            if common.seconds_left(inp.run) <= 0:
                return await self._finish(TIMED_OUT, self._partial, "the run's deadline passed")
            held = await self._checkpoint()
            if held is not None:
                return held
            self._step = f"generate {iteration}"
            gen = await self._generate(iteration, forced)
            if isinstance(gen, NodeResult):
                return gen
            if gen.final is not None:
                return await self._finish(COMPLETED, gen.final, None)
            if forced:
                if self._partial is not None:
                    return await self._finish(COMPLETED, self._partial, None)
                return await self._finish(FAILED, None, "no answer after the forced final request")
            for index, block in enumerate(gen.blocks):
                if index > 0:
                    held = await self._checkpoint()
                    if held is not None:
                        return held
                cell_no += 1
                self._step = f"cell {iteration}.{index}"
                self._sandbox_used = True
                try:
                    # Both timeouts end at the deadline: no attempt of the cell runs past it.
                    out: ExecuteOutput = await workflow.execute_activity(
                        common.EXECUTE,
                        ExecuteInput(inp, iteration, index, cell_no, block, self._children),
                        result_type=ExecuteOutput,
                        start_to_close_timeout=common.until_deadline(inp.run),
                        schedule_to_close_timeout=common.until_deadline(inp.run),
                        heartbeat_timeout=common.bounded(inp.run, limits.heartbeat_timeout_s),
                        retry_policy=EXECUTE_RETRY,
                    )
                except ActivityError as err:
                    status, reason = classify_failure(err)
                    return await self._finish(status, self._partial, reason)
                if out.children_after > self._children:
                    # A cell found recorded (a restarted node): its children keep their ids.
                    self._subcalls += out.children_after - self._children
                    self._children = out.children_after
                if out.error is not None:
                    self._last_error = out.error
                if out.answer is not None:
                    self._partial = out.answer
                # RlmCost follows the spend of the node and its finished children cell by cell.
                common.set_status(RUNNING, float(self._cost + self._children_cost))
                if out.ready:
                    return await self._finish(COMPLETED, out.answer, None)
        return await self._finish(FAILED, self._partial, "the iteration loop ended without an answer")

    def _should_continue_as_new(self, iterations_this_run: int) -> bool:
        if self._pause_requested:
            # Hold first: a requested pause would not survive into the new run.
            return False
        every = self._inp.run.limits.iterations_per_run
        return workflow.info().is_continue_as_new_suggested() or (0 < every <= iterations_this_run)

    async def _generate(self, iteration: int, forced: bool) -> GenerateOutput | NodeResult:
        inp = self._inp
        while True:
            since = self._resumes
            try:
                gen: GenerateOutput = await workflow.execute_activity(
                    common.GENERATE,
                    GenerateInput(inp, iteration, forced),
                    result_type=GenerateOutput,
                    start_to_close_timeout=common.bounded(inp.run, GENERATE_TIMEOUT_S),
                    schedule_to_close_timeout=common.until_deadline(inp.run),
                    retry_policy=common.MODEL_RETRY,
                )
            except ActivityError as err:
                status, reason = classify_failure(err)
                return await self._finish(status, self._partial, reason)
            self._cost += Decimal(gen.cost_usd)
            if gen.status == "ok":
                common.set_status(RUNNING, float(self._cost))
                return gen
            paused = await self._hold(PAUSED_BUDGET, "paused for budget", gen.message, since)
            if paused is not None:
                return paused

    async def _checkpoint(self) -> NodeResult | None:
        """Between steps: hold here while an operator's pause is in force."""
        if not self._pause_requested:
            return None
        return await self._hold(
            PAUSED, "paused by an operator", "paused by an operator (rlm pause)", self._resumes
        )

    async def _hold(self, status: str, what: str, message: str | None, since: int) -> NodeResult | None:
        """Wait for an operator's ``resume`` (one after the ``since``-th) or ``abort``; None: go on."""
        self._status, self._message, self._step = status, message, status
        common.set_status(status)
        await common.record(self._event(status, error=message))
        try:
            await workflow.wait_condition(
                lambda: self._resumes > since or self._abort, timeout=common.until_deadline(self._inp.run)
            )
        except TimeoutError:  # asyncio's: wait_condition's timeout (Temporal's TimeoutError is not it)
            return await self._finish(TIMED_OUT, self._partial, f"{what} until the deadline: {message}")
        if self._abort:
            return await self._finish(ABORTED, self._partial, f"aborted while {what}: {message}")
        self._pause_requested = False
        self._status, self._message = RUNNING, None
        common.set_status(RUNNING)
        await common.record(self._event(RUNNING))
        return None

    async def _finish(self, status: str, answer: Text | None, error: str | None) -> NodeResult:
        # Sub-call updates still running would be lost with the workflow: let them complete first.
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._status, self._message, self._step = status, error, "done"
        await common.record(self._event(status, answer, error))
        total = self._cost + self._children_cost
        common.set_status(status, float(total))
        await self._release_sandbox()
        # The result's cost is the subtree's: a parent's RlmCost then adds up its whole subtree.
        return NodeResult(self._inp.node_id, status, answer, error, self._iteration, str(total))

    def _event(self, status: str, answer: Text | None = None, error: str | None = None) -> NodeEvent:
        inp = self._inp
        return NodeEvent(
            inp.run.run_id,
            inp.node_id,
            inp.parent_id,
            inp.depth,
            inp.kind,
            status,
            inp.run.tenant,
            answer,
            error,
        )

    # --- sub-calls -----------------------------------------------------------------------------

    @workflow.update
    async def subcall(self, batch: SubcallBatch) -> SubcallReply:
        key = update_id(self._inp.node_id, batch.iteration, batch.cell, batch.seq)
        known = self._replies.get(key)
        if known is not None:
            return known
        limit = self._inp.run.limits.max_subcalls
        wanted = len(batch.prompts)
        if self._subcalls + wanted > limit:
            reply = SubcallReply(
                error=(
                    f"max_subcalls reached: this node may make {limit} sub-calls, has made {self._subcalls}, "
                    f"and this call asks for {wanted} more; batch several questions into one prompt or use "
                    "bigger chunks"
                )
            )
        else:
            first = self._children + 1
            self._subcalls += wanted
            self._children += wanted
            results = await asyncio.gather(
                *(self._child(first + i, batch, i) for i in range(len(batch.prompts)))
            )
            reply = dataclasses.replace(_reply(results), started=wanted)
        self._replies[key] = reply
        return reply

    async def _child(self, number: int, batch: SubcallBatch, index: int) -> NodeResult:
        result = await self._start_child(number, batch, index)
        self._child_states[result.node_id] = ChildState(result.node_id, result.status, result.cost_usd)
        self._children_cost += Decimal(result.cost_usd)
        if result.answer is None:
            self._last_error = result.error or f"sub-call {result.node_id} ended {result.status}"
        now = workflow.time()
        if now - self._cost_shown_at >= COST_EVERY_S:
            self._cost_shown_at = now
            common.set_status(self._status, float(self._cost + self._children_cost))
        return result

    async def _start_child(self, number: int, batch: SubcallBatch, index: int) -> NodeResult:
        inp = self._inp
        run = inp.run
        prompt = batch.prompts[index]
        cid = child_id(inp.node_id, number)
        model = batch.model or run.sub_model
        depth = inp.depth + 1
        memo = common.memo(batch.titles[index] if index < len(batch.titles) else prompt.preview)
        self._child_states[cid] = ChildState(cid, RUNNING)
        async with self._slots:
            refused = await self._unless_paused(cid)
            if refused is not None:
                return refused
            try:
                if batch.kind == "rlm" and depth <= run.limits.max_depth:
                    node = NodeInput(run, cid, inp.node_id, depth, "rlm", model, context=prompt)
                    child = await workflow.start_child_workflow(
                        RLMNode.run,
                        node,
                        id=cid,
                        search_attributes=common.search_attributes(run, depth, RUNNING),
                        memo=memo,
                        parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                    )
                    return await self._follow(child)
                leaf = LeafInput(run, cid, inp.node_id, depth, model, prompt)
                if run.limits.leaf_mode == LEAF_INLINE:
                    return await self._inline_leaf(leaf)
                return await workflow.execute_child_workflow(
                    Leaf.run,
                    leaf,
                    id=cid,
                    search_attributes=common.search_attributes(run, depth, RUNNING),
                    memo=memo,
                    parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                )
            except ChildWorkflowError as err:
                return NodeResult(cid, FAILED, None, f"sub-call {cid} failed: {err.cause or err}")

    async def _unless_paused(self, cid: str) -> NodeResult | None:
        """While a pause is requested no child starts: wait for ``resume`` (None: start it now).

        ``abort`` or the run's deadline while waiting ends the sub-call unstarted, with the reason."""
        if not self._pause_requested:
            return None
        self._held += 1
        await self._show_held()
        timed_out = False
        try:
            await workflow.wait_condition(
                lambda: not self._pause_requested or self._abort,
                timeout=common.until_deadline(self._inp.run),
            )
        except TimeoutError:
            timed_out = True
        self._held -= 1
        if self._abort:
            # The node holds at its next step and ends aborted there: it stays shown as paused.
            return NodeResult(
                cid, ABORTED, None, f"sub-call {cid} was not started: the node was aborted while paused"
            )
        await self._show_held()
        if timed_out:
            return NodeResult(
                cid,
                TIMED_OUT,
                None,
                f"sub-call {cid} was not started: the node stayed paused until the run's deadline",
            )
        return None

    async def _show_held(self) -> None:
        """The node shows ``paused`` while any sub-call is held, ``running`` again when none is.

        One at a time, so the store's last write is the current state."""
        async with self._held_status:
            held = self._held > 0
            if held == (self._status == PAUSED):
                return
            status, message = (PAUSED, HELD_MESSAGE) if held else (RUNNING, None)
            self._status, self._message = status, message
            common.set_status(status)
            await common.record(self._event(status, error=message))

    async def _follow(self, child: ChildWorkflowHandle[RLMNode, NodeResult]) -> NodeResult:
        """Wait for a started RLM child, passing pause, resume and abort on to it meanwhile."""
        self._rlm_children[child.id] = child
        try:
            if self._pause_requested:
                # The pause came while the child was being started, so the signals passed on missed it.
                await _tell(child, "pause")
            return await child
        finally:
            del self._rlm_children[child.id]

    # --- inline leaves ---------------------------------------------------------------------------

    async def _inline_leaf(self, leaf: LeafInput) -> NodeResult:
        """An ``llm_query`` sub-call as a local activity of this node (``leaf_mode="inline"``).

        The same ``leaf_call`` step a ``Leaf`` workflow runs (same store node, ledger key and recorded
        step, so a re-run finds it), without the child workflow's server round trips and workflow
        tasks. A budget refusal holds the sub-call (the node shows ``paused_budget``) until ``resume``
        or ``abort``."""
        while True:
            if common.seconds_left(leaf.run) <= 0:
                return await self._inline_end(leaf, TIMED_OUT, "the run's deadline passed")
            since = self._resumes
            call = start_leaf_call(leaf)
            self._inline[leaf.node_id] = (leaf, call)
            try:
                out = await call
            except STEP_FAILED as err:
                status, reason = classify_failure(err)
                return await self._inline_end(leaf, status, reason)
            finally:
                self._inline.pop(leaf.node_id, None)
            if out.status == "ok":
                return NodeResult(leaf.node_id, COMPLETED, out.answer, None, 1, out.cost_usd)
            ended = await self._budget_hold(leaf, out.message, since)
            if ended is not None:
                return ended

    async def _budget_hold(self, leaf: LeafInput, message: str | None, since: int) -> NodeResult | None:
        """Hold an inline sub-call the budget refused until a ``resume`` that came after the refused
        call started (``since``); None: resumed, ask again."""
        self._budget_holds += 1
        if self._budget_holds == 1:
            self._status, self._message = PAUSED_BUDGET, message
            common.set_status(PAUSED_BUDGET)
        await common.record(leaf_event(leaf, PAUSED_BUDGET, error=message))
        timed_out = False
        try:
            await workflow.wait_condition(
                lambda: self._resumes > since or self._abort, timeout=common.until_deadline(leaf.run)
            )
        except TimeoutError:
            timed_out = True
        finally:
            self._budget_holds -= 1
            if self._budget_holds == 0 and self._status == PAUSED_BUDGET:
                self._status, self._message = RUNNING, None
                common.set_status(RUNNING)
        if timed_out:
            return await self._inline_end(leaf, TIMED_OUT, f"paused for budget until the deadline: {message}")
        if self._abort:
            return await self._inline_end(leaf, ABORTED, f"aborted while paused for budget: {message}")
        return None

    async def _inline_end(self, leaf: LeafInput, status: str, error: str) -> NodeResult:
        await common.record(leaf_event(leaf, status, error=error))
        return NodeResult(leaf.node_id, status, None, error)


async def _tell(child: ChildWorkflowHandle[RLMNode, NodeResult], signal: str) -> None:
    # A child that ended before the signal reached it has nothing left to hold or release.
    with contextlib.suppress(FailureError):
        await child.signal(signal)


def _reply(results: list[NodeResult]) -> SubcallReply:
    """Every answer that exists, and a marker in the place of each child that ended without one."""
    answers: list[Text] = []
    failed: list[int] = []
    for index, result in enumerate(results):
        if result.answer is None:
            failed.append(index)
            answers.append(Text(inline=failed_item(result.node_id, result.status, result.error)))
        else:
            answers.append(result.answer)
    return SubcallReply(answers=answers, failed=failed)
