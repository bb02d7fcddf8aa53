"""``Leaf``: one plain completion (an ``llm_query`` prompt, or ``rlm_query`` once the depth is used up).

The call runs as one local activity (reserve, complete, settle, record): a leaf is the bulk of a big
tree and a local activity saves the round trip through the task queue. A leaf that cannot reserve
its budget pauses as ``paused_budget`` until a ``resume`` or ``abort`` signal; a ``resume`` that
arrived while the refused call was running counts (the operator raised the budget and resumed before
the refusal came back). Cancelled (``rlm abort``), it records ``aborted`` and ends cancelled. A leaf
is one step, so ``pause`` does not apply.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

from orchestrator.vocabulary import NodeKind, Outcome, Status
from orchestrator.workflows import common, details
from orchestrator.workflows.operator import OperatorSignals, Released, await_cancel, await_operator
from orchestrator.workflows.types import LeafCallOutput, LeafInput, NodeEvent, NodeResult, NodeState, Text

# How a failed step reaches the workflow: a (remote) activity's failure is an ActivityError wrapping
# the cause; a local activity's non-retryable failure arrives as the cause itself.
STEP_FAILED = (ActivityError, ApplicationError, ActivityTimeoutError, CancelledError)

LEAF_CALL_TIMEOUT_S = 600.0
# Retries of a leaf's call after this long wait on a workflow timer instead of inside the task.
LOCAL_RETRY_THRESHOLD = timedelta(seconds=5)
# The call times itself out at the run's deadline; Temporal's timeouts of the activity come this much
# later, so that the activity reports the deadline itself (final) instead of being cut in its last
# store write at the same instant, which Temporal retries a second later only to end it then.
DEADLINE_GRACE = timedelta(seconds=1)


@workflow.defn(name="Leaf")
class Leaf:
    def __init__(self) -> None:
        self._signals = OperatorSignals()
        self._state = NodeState(node_id="")
        self._model = ""

    @workflow.signal
    def resume(self) -> None:
        self._signals.resume()

    @workflow.signal
    def abort(self) -> None:
        self._signals.abort = True

    @workflow.query
    def state(self) -> NodeState:
        return self._state

    @workflow.run
    async def run(self, inp: LeafInput) -> NodeResult:
        self._state = NodeState(node_id=inp.node_id, iteration=1, step=Status.RUNNING)
        self._model = inp.model
        self._refresh()
        try:
            return await self._run(inp)
        except asyncio.CancelledError:
            self._show(Status.ABORTED, None)
            reason = "aborted by an operator (workflow cancelled)"
            await common.record(leaf_event(inp, Status.ABORTED, error=reason))
            raise

    async def _run(self, inp: LeafInput) -> NodeResult:
        while True:
            if common.seconds_left(inp.run) <= 0:
                return await self._finish(inp, Status.TIMED_OUT, None, "the run's deadline passed")
            since = self._signals.resumes
            try:
                out = await start_leaf_call(inp)
            except STEP_FAILED as err:
                status, reason = classify_failure(err)
                return await self._finish(inp, status, None, reason)
            if out.status == Outcome.OK:
                return await self._finish(inp, Status.COMPLETED, out, None)
            if out.status == Outcome.ABORTED:
                await await_cancel(inp.run)
                return await self._finish(inp, Status.ABORTED, None, out.message)
            self._show(Status.PAUSED_BUDGET, out.message)
            await common.record(leaf_event(inp, Status.PAUSED_BUDGET, error=out.message))
            released = await await_operator(self._signals, inp.run, resumed_after=since)
            if released == Released.DEADLINE:
                why = f"paused for budget until the deadline: {out.message}"
                return await self._finish(inp, Status.TIMED_OUT, None, why)
            if released == Released.ABORTED:
                return await self._finish(
                    inp, Status.ABORTED, None, f"aborted while paused for budget: {out.message}"
                )
            self._show(Status.RUNNING, None)

    def _refresh(self) -> None:
        workflow.set_current_details(details.leaf_details(self._state, self._model))

    def _show(self, status: Status, message: str | None) -> None:
        self._state.status, self._state.message, self._state.step = status, message, status
        common.set_status(status)
        self._refresh()

    async def _finish(
        self, inp: LeafInput, status: Status, out: LeafCallOutput | None, error: str | None
    ) -> NodeResult:
        answer = out.answer if out else None
        cost = out.cost_usd if out else "0"
        if status != Status.COMPLETED or error:
            # The call's own step already recorded success; only failures need a final write here.
            await common.record(leaf_event(inp, status, answer, error))
        state = self._state
        state.status, state.message, state.step, state.cost_usd = status, error, status, cost
        common.set_status(status, Decimal(cost))
        self._refresh()
        return NodeResult(
            node_id=inp.node_id, status=status, answer=answer, error=error, iterations=1 if out else 0,
            cost_usd=cost,
        )  # fmt: skip


def leaf_event(
    inp: LeafInput, status: Status, answer: Text | None = None, error: str | None = None
) -> NodeEvent:
    """What the store records of a leaf: from its ``Leaf`` workflow, or its parent for an inline leaf."""
    return NodeEvent(
        run_id=inp.run.run_id, node_id=inp.node_id, parent_id=inp.parent_id, depth=inp.depth,
        kind=NodeKind.LEAF, status=status, tenant=inp.run.tenant, answer=answer, error=error,
    )  # fmt: skip


def start_leaf_call(inp: LeafInput) -> workflow.ActivityHandle[LeafCallOutput]:
    """The ``leaf_call`` local activity: a ``Leaf`` workflow's one step, or an inline leaf of a node."""
    return workflow.start_local_activity(
        common.LEAF_CALL,
        inp,
        result_type=LeafCallOutput,
        start_to_close_timeout=common.bounded(inp.run, LEAF_CALL_TIMEOUT_S) + DEADLINE_GRACE,
        schedule_to_close_timeout=common.until_deadline(inp.run) + DEADLINE_GRACE,
        retry_policy=common.MODEL_RETRY,
        local_retry_threshold=LOCAL_RETRY_THRESHOLD,
    )


def classify_failure(err: FailureError) -> tuple[Status, str]:
    """Map a failed activity (one of ``STEP_FAILED``) to the node's final status and a one-line reason.

    A cancelled activity means this workflow is being cancelled (``rlm abort``; nothing else cancels
    our activities): that ends the node ``aborted`` through the cancellation path, not ``failed``."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, CancelledError):
        raise asyncio.CancelledError(str(cause)) from err
    if isinstance(cause, ActivityTimeoutError):
        return Status.TIMED_OUT, "the run's deadline passed while a step was running"
    if isinstance(cause, ApplicationError) and cause.type == common.DEADLINE_PASSED:
        return Status.TIMED_OUT, cause.message
    if isinstance(cause, ApplicationError):
        return Status.FAILED, cause.message
    return Status.FAILED, str(cause or err)
