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
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

from orchestrator.workflows import common
from orchestrator.workflows.types import (
    ABORTED,
    COMPLETED,
    FAILED,
    PAUSED_BUDGET,
    RUNNING,
    TIMED_OUT,
    LeafCallOutput,
    LeafInput,
    NodeEvent,
    NodeResult,
    NodeState,
    Text,
)

# How a failed step reaches the workflow: a (remote) activity's failure is an ActivityError wrapping
# the cause; a local activity's non-retryable failure arrives as the cause itself.
STEP_FAILED = (ActivityError, ApplicationError, ActivityTimeoutError, CancelledError)

LEAF_CALL_TIMEOUT_S = 600.0
# Retries of a leaf's call after this long wait on a workflow timer instead of inside the task.
LOCAL_RETRY_THRESHOLD = timedelta(seconds=5)


@workflow.defn(name="Leaf")
class Leaf:
    def __init__(self) -> None:
        self._resumes = 0  # `resume` signals so far: a hold ends on one that came after its call started
        self._abort = False
        self._node_id = ""
        self._status = RUNNING
        self._message: str | None = None
        self._cost = "0"

    @workflow.signal
    def resume(self) -> None:
        self._resumes += 1

    @workflow.signal
    def abort(self) -> None:
        self._abort = True

    @workflow.query
    def state(self) -> NodeState:
        return NodeState(self._node_id, self._status, 1, 0, 0, self._cost, self._message, step=self._status)

    @workflow.run
    async def run(self, inp: LeafInput) -> NodeResult:
        self._node_id = inp.node_id
        try:
            return await self._run(inp)
        except asyncio.CancelledError:
            self._status = ABORTED
            common.set_status(ABORTED)
            reason = "aborted by an operator (workflow cancelled)"
            await common.record(leaf_event(inp, ABORTED, error=reason))
            raise

    async def _run(self, inp: LeafInput) -> NodeResult:
        while True:
            if common.seconds_left(inp.run) <= 0:
                return await self._finish(inp, TIMED_OUT, None, "the run's deadline passed")
            since = self._resumes
            try:
                out = await start_leaf_call(inp)
            except STEP_FAILED as err:
                status, reason = classify_failure(err)
                return await self._finish(inp, status, None, reason)
            if out.status == "ok":
                return await self._finish(inp, COMPLETED, out, None)
            self._status, self._message = PAUSED_BUDGET, out.message
            common.set_status(PAUSED_BUDGET)
            await common.record(leaf_event(inp, PAUSED_BUDGET, error=out.message))
            try:
                await workflow.wait_condition(
                    self._resumed_since(since), timeout=common.until_deadline(inp.run)
                )
            except TimeoutError:  # asyncio's, from wait_condition (not Temporal's ActivityTimeoutError)
                return await self._finish(
                    inp, TIMED_OUT, None, f"paused for budget until the deadline: {out.message}"
                )
            if self._abort:
                return await self._finish(
                    inp, ABORTED, None, f"aborted while paused for budget: {out.message}"
                )
            self._status, self._message = RUNNING, None
            common.set_status(RUNNING)

    def _resumed_since(self, since: int) -> Callable[[], bool]:
        """A ``resume`` after the ``since``-th (one sent while the refused call ran counts), or ``abort``."""
        return lambda: self._resumes > since or self._abort

    async def _finish(
        self, inp: LeafInput, status: str, out: LeafCallOutput | None, error: str | None
    ) -> NodeResult:
        answer = out.answer if out else None
        cost = out.cost_usd if out else "0"
        if status != COMPLETED or error:
            # The call's own step already recorded success; only failures need a final write here.
            await common.record(leaf_event(inp, status, answer, error))
        self._status, self._message, self._cost = status, error, cost
        common.set_status(status, float(cost))
        return NodeResult(inp.node_id, status, answer, error, 1 if out else 0, cost)


def leaf_event(
    inp: LeafInput, status: str, answer: Text | None = None, error: str | None = None
) -> NodeEvent:
    """What the store records of a leaf: from its ``Leaf`` workflow, or its parent for an inline leaf."""
    return NodeEvent(
        inp.run.run_id,
        inp.node_id,
        inp.parent_id,
        inp.depth,
        "leaf",
        status,
        inp.run.tenant,
        answer,
        error,
    )


def start_leaf_call(inp: LeafInput) -> workflow.ActivityHandle[LeafCallOutput]:
    """The ``leaf_call`` local activity: a ``Leaf`` workflow's one step, or an inline leaf of a node."""
    return workflow.start_local_activity(
        common.LEAF_CALL,
        inp,
        result_type=LeafCallOutput,
        start_to_close_timeout=common.bounded(inp.run, LEAF_CALL_TIMEOUT_S),
        schedule_to_close_timeout=common.until_deadline(inp.run),
        retry_policy=common.MODEL_RETRY,
        local_retry_threshold=LOCAL_RETRY_THRESHOLD,
    )


def classify_failure(err: FailureError) -> tuple[str, str]:
    """Map a failed activity (one of ``STEP_FAILED``) to the node's final status and a one-line reason.

    A cancelled activity means this workflow is being cancelled (``rlm abort``; nothing else cancels
    our activities): that ends the node ``aborted`` through the cancellation path, not ``failed``."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, CancelledError):
        raise asyncio.CancelledError(str(cause)) from err
    if isinstance(cause, ActivityTimeoutError):
        return TIMED_OUT, "the run's deadline passed while a step was running"
    if isinstance(cause, ApplicationError) and cause.type == common.DEADLINE_PASSED:
        return TIMED_OUT, cause.message
    if isinstance(cause, ApplicationError):
        return FAILED, cause.message
    return FAILED, str(cause or err)
