"""``RLMNode``: the root and every recursive sub-call of an RLM run.

Per iteration: ``generate`` (the model writes code), then ``execute`` once per code block (the cell
runs in the node's sandbox session). Sub-calls from a running cell arrive as the ``subcall`` Update,
handled by ``Subcalls`` (subcalls.py). Limits: ``max_iterations`` (then one forced final answer), the
run's absolute deadline (the node ends ``timed_out`` keeping any partial answer), budgets (held
``paused_budget`` until ``resume`` or ``abort``). An operator's ``pause`` holds the node before its
next step; every hold is ``await_operator`` (operator.py). Cancelled (``rlm abort``), the node ends
``aborted`` and its children, started with ``REQUEST_CANCEL``, in turn. However a node that ran a cell
ends, it removes its sandbox containers last. docs/architecture.md shows the whole route.
"""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError

from orchestrator.vocabulary import Outcome, Status
from orchestrator.workflows import common, details, steps
from orchestrator.workflows.leaf import classify_failure
from orchestrator.workflows.operator import OperatorSignals, Released, await_cancel, await_operator
from orchestrator.workflows.subcalls import Subcalls
from orchestrator.workflows.types import (
    ExecuteInput,
    GenerateInput,
    GenerateOutput,
    NodeEvent,
    NodeInput,
    NodeResult,
    NodeState,
    SubcallBatch,
    SubcallReply,
    Text,
)

ABORTED_REASON = "aborted by an operator (workflow cancelled)"


@workflow.defn(name="RLMNode")
class RLMNode:
    @workflow.init
    def __init__(self, inp: NodeInput) -> None:
        self._inp = inp
        # What activities get: the carried state is the workflow's own, not the steps'.
        self._step_input = dataclasses.replace(inp, carry=None)
        self._signals = OperatorSignals()
        self._state = NodeState(node_id=inp.node_id)
        if inp.carry is not None:  # between iterations: nothing held, nothing running
            self._state = dataclasses.replace(inp.carry, status=Status.RUNNING, message=None, step="")
        self._subcalls = Subcalls(inp, self._signals, self._state, self._show, self._refresh)
        # Whether this node may have sandbox containers to remove when it ends.
        self._sandbox_used = self._state.cells > 0

    # --- operator controls and live state -----------------------------------------------------

    # Each signal is passed on once, when it changes this node's state: an operator who signals
    # every node of a tree and the parents passing it on then cost a few idempotent duplicates.

    @workflow.signal
    async def resume(self) -> None:
        if self._signals.resume():
            await self._subcalls.pass_on("resume")

    @workflow.signal
    async def abort(self) -> None:
        if not self._signals.abort:
            self._signals.abort = True
            await self._subcalls.pass_on("abort")

    @workflow.signal
    async def pause(self) -> None:
        if not self._signals.pause_requested:
            self._signals.pause_requested = True
            await self._subcalls.pass_on("pause")

    @workflow.query
    def state(self) -> NodeState:
        return self._state

    # A node that ends (abort, deadline) while a cell's sub-call waits ends that cell too: its caller,
    # the cell's step, is being stopped and expects the error; the SDK need not warn about it.
    @workflow.update(unfinished_policy=workflow.HandlerUnfinishedPolicy.ABANDON)
    async def subcall(self, batch: SubcallBatch) -> SubcallReply:
        return await self._subcalls.handle(batch)

    # --- the loop ------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: NodeInput) -> NodeResult:
        try:
            return await self._run(inp)
        except asyncio.CancelledError:
            # `rlm abort` (or a cancelled parent): say so everywhere, free the sandbox, then end
            # cancelled; children still running are cancelled by the server (REQUEST_CANCEL).
            state = self._state
            state.status, state.message, state.step = Status.ABORTED, ABORTED_REASON, "done"
            common.set_status(Status.ABORTED, common.total_cost(state))
            self._refresh()
            await common.record(self._event(Status.ABORTED, state.partial, ABORTED_REASON))
            await self._subcalls.inline.abort(ABORTED_REASON)
            await self._release_sandbox()
            raise

    async def _run(self, inp: NodeInput) -> NodeResult:
        state = self._state
        if inp.carry is None:
            await common.record(self._event(Status.RUNNING, starting=True))
        limits = inp.run.limits
        first = state.iteration + 1
        for iteration in range(first, limits.max_iterations + 2):
            if iteration > first and self._should_continue_as_new(iteration - first):
                # Between iterations no cell runs and no sub-call is pending: the history can restart.
                workflow.continue_as_new(dataclasses.replace(inp, carry=state))
            state.iteration = iteration
            forced = iteration > limits.max_iterations
            if common.seconds_left(inp.run) <= 0:
                return await self._finish(Status.TIMED_OUT, state.partial, "the run's deadline passed")
            held = await self._unless_paused()
            if held is not None:
                return held
            state.step = f"generate {iteration}"
            self._refresh()
            gen = await self._generate(iteration, forced)
            if isinstance(gen, NodeResult):
                return gen
            if gen.final is not None:
                return await self._finish(Status.COMPLETED, gen.final, None)
            if forced:
                if state.partial is not None:
                    return await self._finish(Status.COMPLETED, state.partial, None)
                return await self._finish(Status.FAILED, None, "no answer after the forced final request")
            for index, block in enumerate(gen.blocks):
                # The pause was checked just before the model call; a block after the first is a new step.
                held = await self._unless_paused() if index > 0 else None
                ended = held or await self._execute(iteration, index, block)
                if ended is not None:
                    return ended
        return await self._finish(Status.FAILED, state.partial, "the iteration loop ended without an answer")

    def _should_continue_as_new(self, iterations_this_run: int) -> bool:
        if self._signals.pause_requested:
            # Hold first: a requested pause would not survive into the new run.
            return False
        if self._subcalls.history.full:
            return True  # a sub-call was refused for want of room in this run's history
        every = self._inp.run.limits.iterations_per_run
        return workflow.info().is_continue_as_new_suggested() or (0 < every <= iterations_this_run)

    async def _generate(self, iteration: int, forced: bool) -> GenerateOutput | NodeResult:
        state = self._state
        while True:
            since = self._signals.resumes
            try:
                gen = await steps.generate(
                    GenerateInput(node=self._step_input, iteration=iteration, forced_final=forced)
                )
            except ActivityError as err:
                status, reason = classify_failure(err)
                return await self._finish(status, state.partial, reason)
            state.cost_usd = str(Decimal(state.cost_usd) + Decimal(gen.cost_usd))
            self._refresh()
            if gen.status == Outcome.OK:
                common.set_status(Status.RUNNING, common.total_cost(state))
                return gen
            if gen.status == Outcome.ABORTED:
                await await_cancel(self._inp.run)
                return await self._finish(Status.ABORTED, state.partial, gen.message)
            held = await self._hold(Status.PAUSED_BUDGET, "paused for budget", gen.message, since)
            if held is not None:
                return held

    async def _execute(self, iteration: int, index: int, block: Text) -> NodeResult | None:
        """Run one code block in the node's sandbox; a NodeResult when the node ends with it."""
        state = self._state
        state.cells += 1
        state.step = f"cell {iteration}.{index}"
        self._sandbox_used = True
        self._refresh()
        cell = ExecuteInput(
            node=self._step_input, iteration=iteration, index=index, number=state.cells, code=block,
            children_before=state.children,
        )  # fmt: skip
        try:
            out = await steps.execute(cell)
        except ActivityError as err:
            status, reason = classify_failure(err)
            return await self._finish(status, state.partial, reason)
        # A cell found recorded (a restarted node): its children keep their ids.
        state.children = max(state.children, out.children_after)
        if out.error is not None:
            state.last_error = out.error
        if out.answer is not None:
            state.partial = out.answer
        self._refresh()
        # RlmCost follows the spend of the node and its finished children cell by cell.
        common.set_status(Status.RUNNING, common.total_cost(state))
        if out.ready:
            return await self._finish(Status.COMPLETED, out.answer, None)
        return None

    # --- holds and endings ---------------------------------------------------------------------

    async def _unless_paused(self) -> NodeResult | None:
        """Between steps: hold here while an operator's pause is in force."""
        if not self._signals.pause_requested:
            return None
        return await self._hold(
            Status.PAUSED, "paused by an operator", "paused by an operator (rlm pause)", self._signals.resumes
        )

    async def _hold(self, status: Status, what: str, message: str | None, since: int) -> NodeResult | None:
        """Wait for an operator's ``resume`` (one after the ``since``-th) or ``abort``; None: go on."""
        self._state.step = status
        await self._show(status, message)
        released = await await_operator(self._signals, self._inp.run, resumed_after=since)
        if released == Released.DEADLINE:
            return await self._finish(
                Status.TIMED_OUT, self._state.partial, f"{what} until the deadline: {message}"
            )
        if released == Released.ABORTED:
            return await self._finish(Status.ABORTED, self._state.partial, f"aborted while {what}: {message}")
        self._signals.pause_requested = False
        await self._show(Status.RUNNING, None)
        return None

    async def _show(self, status: Status, message: str | None) -> None:
        """The node's status everywhere an operator looks: its state, the search attribute, the store."""
        self._state.status, self._state.message = status, message
        common.set_status(status)
        self._refresh()
        await common.record(self._event(status, error=message))

    async def _finish(self, status: Status, answer: Text | None, error: str | None) -> NodeResult:
        # Sub-call updates still running would be lost with the workflow: let them complete first.
        await workflow.wait_condition(workflow.all_handlers_finished)
        state = self._state
        state.status, state.message, state.step = status, error, "done"
        self._refresh()
        await common.record(self._event(status, answer, error))
        total = common.total_cost(state)
        common.set_status(status, total)
        await self._release_sandbox()
        # The result's cost is the subtree's: a parent's RlmCost then adds up its whole subtree.
        return NodeResult(
            node_id=self._inp.node_id, status=status, answer=answer, error=error, iterations=state.iteration,
            cost_usd=str(total),
        )  # fmt: skip

    def _refresh(self) -> None:
        """The node's current details in the Web UI follow its state."""
        workflow.set_current_details(
            details.node_details(self._state, self._inp.run.limits, self._subcalls.tally)
        )

    async def _release_sandbox(self) -> None:
        """Remove the node's sandbox containers: whatever the ending, none outlives its node."""
        if self._sandbox_used:
            await steps.release_sandbox(self._step_input)

    def _event(
        self, status: Status, answer: Text | None = None, error: str | None = None, *, starting: bool = False
    ) -> NodeEvent:
        inp = self._inp
        return NodeEvent(
            run_id=inp.run.run_id, node_id=inp.node_id, parent_id=inp.parent_id, depth=inp.depth,
            kind=inp.kind, status=status, tenant=inp.run.tenant, answer=answer, error=error,
            starting=starting,
        )  # fmt: skip
