"""``RLMNode``: the root and every recursive sub-call of an RLM run.

Per iteration: ``generate`` (the model writes code), then ``execute`` once per code block (the cell
runs in the node's sandbox session). Sub-calls from a running cell arrive as the ``subcall`` Workflow
Update (sent by the ``execute`` activity, update id = node/iteration/cell/seq); the handler starts one
child workflow per prompt with a readable id (``<run>/0.3.1``), at most ``max_concurrency`` at once,
and returns the answers to the waiting cell. A re-executed cell re-sends the same update ids and gets
the first answers back without starting or paying for anything again.

Limits: ``max_iterations`` (then one forced final answer), ``max_subcalls`` (the call raises in the
cell), the run's absolute deadline (the node ends ``timed_out`` keeping any partial answer), budgets
(``paused_budget`` until a ``resume`` or ``abort`` signal).
"""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ChildWorkflowError, TimeoutError

from orchestrator.workflows import common
from orchestrator.workflows.leaf import Leaf, classify_failure
from orchestrator.workflows.types import (
    ABORTED,
    COMPLETED,
    FAILED,
    PAUSED_BUDGET,
    RUNNING,
    TIMED_OUT,
    Carry,
    ExecuteInput,
    ExecuteOutput,
    GenerateInput,
    GenerateOutput,
    LeafInput,
    NodeEvent,
    NodeInput,
    NodeResult,
    NodeState,
    SubcallBatch,
    SubcallReply,
    Text,
    child_id,
    update_id,
)

GENERATE_TIMEOUT_S = 600.0
# A cell is retried when its worker dies (heartbeat timeout) or the sandbox fails to start; cell
# errors in the user's code are results, not failures.
EXECUTE_RETRY = RetryPolicy(maximum_attempts=10)


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
        self._resume = False
        self._abort = False
        if inp.carry is not None:
            self._iteration = inp.carry.iteration
            self._subcalls = inp.carry.subcalls
            self._children = inp.carry.children
            self._cost = Decimal(inp.carry.cost_usd)
            self._partial = inp.carry.partial

    # --- operator controls and live state -----------------------------------------------------

    @workflow.signal
    def resume(self) -> None:
        self._resume = True

    @workflow.signal
    def abort(self) -> None:
        self._abort = True

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
        )

    # --- the loop ------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: NodeInput) -> NodeResult:
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
                cell_no += 1
                try:
                    out: ExecuteOutput = await workflow.execute_activity(
                        common.EXECUTE,
                        ExecuteInput(inp, iteration, index, cell_no, block),
                        result_type=ExecuteOutput,
                        start_to_close_timeout=common.until_deadline(inp.run),
                        heartbeat_timeout=common.bounded(inp.run, limits.heartbeat_timeout_s),
                        retry_policy=EXECUTE_RETRY,
                    )
                except ActivityError as err:
                    status, reason = classify_failure(err)
                    return await self._finish(status, self._partial, reason)
                if out.answer is not None:
                    self._partial = out.answer
                if out.ready:
                    return await self._finish(COMPLETED, out.answer, None)
        return await self._finish(FAILED, self._partial, "the iteration loop ended without an answer")

    def _should_continue_as_new(self, iterations_this_run: int) -> bool:
        every = self._inp.run.limits.iterations_per_run
        return workflow.info().is_continue_as_new_suggested() or (0 < every <= iterations_this_run)

    async def _generate(self, iteration: int, forced: bool) -> GenerateOutput | NodeResult:
        inp = self._inp
        while True:
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
            paused = await self._pause(gen.message)
            if paused is not None:
                return paused

    async def _pause(self, message: str | None) -> NodeResult | None:
        """Wait for an operator after a refused reservation; None means: resumed, try again."""
        self._status, self._message = PAUSED_BUDGET, message
        common.set_status(PAUSED_BUDGET)
        await common.record(self._event(PAUSED_BUDGET, error=message))
        self._resume = False
        try:
            await workflow.wait_condition(
                lambda: self._resume or self._abort, timeout=common.until_deadline(self._inp.run)
            )
        except TimeoutError:
            return await self._finish(
                TIMED_OUT, self._partial, f"paused for budget until the deadline: {message}"
            )
        if self._abort:
            return await self._finish(ABORTED, self._partial, f"aborted while paused for budget: {message}")
        self._status, self._message = RUNNING, None
        common.set_status(RUNNING)
        await common.record(self._event(RUNNING))
        return None

    async def _finish(self, status: str, answer: Text | None, error: str | None) -> NodeResult:
        # Sub-call updates still running would be lost with the workflow: let them complete first.
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._status, self._message = status, error
        await common.record(self._event(status, answer, error))
        common.set_status(status, float(self._cost))
        return NodeResult(self._inp.node_id, status, answer, error, self._iteration, str(self._cost))

    def _event(self, status: str, answer: Text | None = None, error: str | None = None) -> NodeEvent:
        inp = self._inp
        return NodeEvent(
            inp.run.run_id, inp.node_id, inp.parent_id, inp.depth, inp.kind, status, answer, error
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
                *(self._child(first + i, batch, prompt) for i, prompt in enumerate(batch.prompts))
            )
            reply = _reply(results)
        self._replies[key] = reply
        return reply

    async def _child(self, number: int, batch: SubcallBatch, prompt: Text) -> NodeResult:
        inp = self._inp
        run = inp.run
        cid = child_id(inp.node_id, number)
        model = batch.model or run.sub_model
        depth = inp.depth + 1
        async with self._slots:
            try:
                if batch.kind == "rlm" and depth <= run.limits.max_depth:
                    node = NodeInput(run, cid, inp.node_id, depth, "rlm", model, context=prompt)
                    return await workflow.execute_child_workflow(
                        RLMNode.run,
                        node,
                        id=cid,
                        search_attributes=common.search_attributes(run, depth, RUNNING),
                    )
                leaf = LeafInput(run, cid, inp.node_id, depth, model, prompt)
                return await workflow.execute_child_workflow(
                    Leaf.run, leaf, id=cid, search_attributes=common.search_attributes(run, depth, RUNNING)
                )
            except ChildWorkflowError as err:
                return NodeResult(cid, FAILED, None, f"sub-call {cid} failed: {err.cause or err}")


def _reply(results: list[NodeResult]) -> SubcallReply:
    answers: list[Text] = []
    for result in results:
        if result.answer is None:
            reason = result.error or result.status
            return SubcallReply(
                error=f"sub-call {result.node_id} ended {result.status} without an answer: {reason}"
            )
        answers.append(result.answer)
    return SubcallReply(answers=answers)
