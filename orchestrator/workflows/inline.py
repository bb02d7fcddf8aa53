"""Inline leaves: an ``llm_query`` sub-call as a local activity of its parent node (``leaf_mode=inline``).

The same ``leaf_call`` step a ``Leaf`` workflow runs (same store node, ledger key and recorded step, so
a re-run finds it), without the child workflow's server round trips and workflow tasks. A budget
refusal holds the sub-call (the parent shows ``paused_budget``) until ``resume`` or ``abort``; an
aborted parent stops the calls in flight and records each leaf ``aborted``. Deterministic code only.
"""

from __future__ import annotations

from collections.abc import Callable

from temporalio import workflow

from orchestrator.vocabulary import Outcome, Status
from orchestrator.workflows import common
from orchestrator.workflows.leaf import STEP_FAILED, classify_failure, leaf_event, start_leaf_call
from orchestrator.workflows.operator import OperatorSignals, Released, await_operator
from orchestrator.workflows.types import LeafCallOutput, LeafInput, NodeResult, NodeState


class InlineLeaves:
    def __init__(self, signals: OperatorSignals, state: NodeState, changed: Callable[[], None]) -> None:
        self._signals = signals
        self._state = state  # the parent's: it shows paused_budget while any inline leaf is held
        self._changed = changed
        self._in_flight: dict[str, tuple[LeafInput, workflow.ActivityHandle[LeafCallOutput]]] = {}
        self._budget_holds = 0

    async def run(self, leaf: LeafInput) -> NodeResult:
        while True:
            if common.seconds_left(leaf.run) <= 0:
                return await _end(leaf, Status.TIMED_OUT, "the run's deadline passed")
            since = self._signals.resumes
            call = start_leaf_call(leaf)
            self._in_flight[leaf.node_id] = (leaf, call)
            try:
                out = await call
            except STEP_FAILED as err:
                status, reason = classify_failure(err)
                return await _end(leaf, status, reason)
            finally:
                self._in_flight.pop(leaf.node_id, None)
            if out.status == Outcome.OK:
                return NodeResult(
                    node_id=leaf.node_id, status=Status.COMPLETED, answer=out.answer, iterations=1,
                    cost_usd=out.cost_usd,
                )  # fmt: skip
            if out.status == Outcome.ABORTED:
                # The parent's own cancel follows and ends it; the cell gets this item's error meanwhile.
                return await _end(leaf, Status.ABORTED, out.message or "aborted by an operator")
            ended = await self._budget_hold(leaf, out.message, since)
            if ended is not None:
                return ended

    async def abort(self, reason: str) -> None:
        """The parent was aborted: inline leaves have no workflow of their own to be cancelled with."""
        in_flight = [self._in_flight[leaf_id] for leaf_id in sorted(self._in_flight)]
        for _, call in in_flight:
            call.cancel()
        for leaf, _ in in_flight:
            await common.record(leaf_event(leaf, Status.ABORTED, error=reason))

    async def _budget_hold(self, leaf: LeafInput, message: str | None, since: int) -> NodeResult | None:
        """Hold a sub-call the budget refused until a ``resume`` that came after the refused call
        started (``since``); None: resumed, ask again."""
        state = self._state
        self._budget_holds += 1
        if self._budget_holds == 1:
            state.status, state.message = Status.PAUSED_BUDGET, message
            common.set_status(Status.PAUSED_BUDGET)
            self._changed()
        await common.record(leaf_event(leaf, Status.PAUSED_BUDGET, error=message))
        try:
            released = await await_operator(self._signals, leaf.run, resumed_after=since)
        finally:
            self._budget_holds -= 1
            if self._budget_holds == 0 and state.status == Status.PAUSED_BUDGET:
                state.status, state.message = Status.RUNNING, None
                common.set_status(Status.RUNNING)
                self._changed()
        if released == Released.DEADLINE:
            return await _end(leaf, Status.TIMED_OUT, f"paused for budget until the deadline: {message}")
        if released == Released.ABORTED:
            return await _end(leaf, Status.ABORTED, f"aborted while paused for budget: {message}")
        return None


async def _end(leaf: LeafInput, status: Status, error: str) -> NodeResult:
    await common.record(leaf_event(leaf, status, error=error))
    return NodeResult(node_id=leaf.node_id, status=status, answer=None, error=error)
