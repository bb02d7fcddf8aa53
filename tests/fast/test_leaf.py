"""The ``Leaf`` workflow against a stub ``leaf_call``: an answer, a failure a retry cannot fix, a budget
hold lifted by ``resume``, the deadline while held, the call's timeouts close to the deadline, and a call
the worker stopped for an abort."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment

from orchestrator.vocabulary import Outcome, Status
from orchestrator.workflows import Leaf
from orchestrator.workflows.common import SHORTEST_TIMEOUT_S, search_attributes, step_timeout_s
from orchestrator.workflows.leaf import DEADLINE_GRACE
from orchestrator.workflows.types import LeafCallOutput, LeafInput, NodeResult, Text, child_id, root_id
from tests.fast.stubs import (
    STOPPED,
    TASK_QUEUE,
    Scenario,
    Stubs,
    echo_leaf,
    ended,
    fails_for_good,
    leaf_refused,
    run_spec,
    state_becomes,
)

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]


async def start_leaf(
    env: WorkflowEnvironment, scenario: Scenario, deadline_in_s: float = 3600
) -> WorkflowHandle[Leaf, NodeResult]:
    """A leaf as its parent node starts it (id ``<run>/0.1``)."""
    now = (await env.get_current_time()).timestamp()
    run = run_spec(scenario, now + deadline_in_s)
    parent = root_id(run.run_id)
    leaf = LeafInput(
        run=run,
        node_id=child_id(parent, 1),
        parent_id=parent,
        depth=1,
        model=run.sub_model,
        prompt=Text(inline="a question"),
    )
    handle = await env.client.start_workflow(
        Leaf.run,
        leaf,
        id=leaf.node_id,
        task_queue=TASK_QUEUE,
        search_attributes=search_attributes(run, 1, Status.RUNNING),
    )
    scenario.started.append(handle.id)
    return handle


async def test_a_leaf_completes_with_its_answer(env: WorkflowEnvironment, stubs: Stubs) -> None:
    run = stubs.scenario()
    handle = await start_leaf(env, run)

    result = await ended(handle)

    assert (result.status, result.answer, result.error) == (
        Status.COMPLETED,
        Text(inline="answer to a question"),
        None,
    )
    assert (result.iterations, result.cost_usd) == (1, "0.001")
    assert len(run.leaves) == 1


async def test_a_failure_no_retry_fixes_ends_the_leaf_failed(env: WorkflowEnvironment, stubs: Stubs) -> None:
    def fails(inp: LeafInput) -> LeafCallOutput:
        raise fails_for_good("the model 'stub/sub' does not exist")

    run = stubs.scenario(leaf=fails)
    handle = await start_leaf(env, run)

    result = await ended(handle)

    assert (result.status, result.answer) == (Status.FAILED, None)
    assert result.error == "the model 'stub/sub' does not exist"
    assert len(run.leaves) == 1  # not retried
    assert run.statuses(handle.id) == [Status.FAILED]


def refused_once(inp: LeafInput, calls: list[LeafInput]) -> LeafCallOutput:
    calls.append(inp)
    return leaf_refused(inp) if len(calls) == 1 else echo_leaf(inp)


async def test_a_budget_refusal_holds_the_leaf_until_resume(env: WorkflowEnvironment, stubs: Stubs) -> None:
    calls: list[LeafInput] = []
    run = stubs.scenario(leaf=lambda inp: refused_once(inp, calls))
    handle = await start_leaf(env, run)

    state = await state_becomes(handle, Status.PAUSED_BUDGET)
    assert state.message == "tenant budget exhausted"
    await handle.signal(Leaf.resume)
    result = await ended(handle)

    assert (result.status, result.answer) == (Status.COMPLETED, Text(inline="answer to a question"))
    assert len(calls) == 2
    assert run.statuses(handle.id) == [Status.PAUSED_BUDGET]


async def test_the_deadline_ends_a_held_leaf_timed_out(env: WorkflowEnvironment, stubs: Stubs) -> None:
    run = stubs.scenario(leaf=leaf_refused)
    handle = await start_leaf(env, run, deadline_in_s=3600)

    result = await ended(handle)

    assert (result.status, result.answer) == (Status.TIMED_OUT, None)
    assert result.error == "paused for budget until the deadline: tenant budget exhausted"
    assert run.statuses(handle.id) == [Status.PAUSED_BUDGET, Status.TIMED_OUT]


async def test_a_call_started_just_before_the_deadline_may_not_outlast_it(
    env: WorkflowEnvironment, stubs: Stubs
) -> None:
    """The call inside the step times itself out at the deadline: the time left, not a fixed floor of a
    second that would let it run past it; past the deadline, the shortest timeout Temporal takes as one
    (zero means none). Temporal's own timeouts of the step come ``DEADLINE_GRACE`` later, so the step
    reports the deadline itself instead of being cut in its last store write and retried."""
    given: list[tuple[timedelta | None, timedelta | None]] = []

    def timed(inp: LeafInput) -> LeafCallOutput:
        info = activity.info()
        given.append((info.start_to_close_timeout, info.schedule_to_close_timeout))
        return echo_leaf(inp)

    handle = await start_leaf(env, stubs.scenario(leaf=timed), deadline_in_s=0.8)
    await ended(handle)

    ((start_to_close, schedule_to_close),) = given
    left = timedelta(seconds=0.8)
    assert start_to_close is not None and schedule_to_close == start_to_close
    before_grace = start_to_close - DEADLINE_GRACE
    assert timedelta(seconds=SHORTEST_TIMEOUT_S) <= before_grace <= left
    # The model call inside the step is bounded the same way (``ModelActivities._call``).
    assert (step_timeout_s(0.3, 600), step_timeout_s(-5, 600), step_timeout_s(3600, 600)) == (0.3, 0.1, 600)


async def test_a_call_stopped_for_an_abort_ends_the_leaf_cancelled_by_the_cancel_that_follows(
    env: WorkflowEnvironment, stubs: Stubs
) -> None:
    """As `rlm abort` does it: the store is marked, the cancel sent; the worker stops the call, which
    returns ``aborted`` while the cancel waits for the leaf's task to end."""

    async def stopped(inp: LeafInput) -> LeafCallOutput:
        await env.client.get_workflow_handle(inp.node_id).cancel()
        return LeafCallOutput(status=Outcome.ABORTED, message=STOPPED.format(node=inp.node_id))

    run = stubs.scenario(leaf=stopped)
    handle = await start_leaf(env, run)

    with pytest.raises(WorkflowFailureError) as failure:
        await ended(handle)

    assert isinstance(failure.value.cause, CancelledError)
    assert run.statuses(handle.id) == [Status.ABORTED]
    assert run.events[-1].error == "aborted by an operator (workflow cancelled)"
    assert len(run.leaves) == 1


async def test_a_call_stopped_for_an_abort_whose_cancel_never_comes_ends_the_leaf_aborted(
    env: WorkflowEnvironment, stubs: Stubs
) -> None:
    """`rlm abort` died between marking the store and cancelling: the leaf ends itself after the grace."""
    run = stubs.scenario(leaf=lambda inp: LeafCallOutput(status=Outcome.ABORTED, message="stopped"))
    # The wait for the cancel ends at the deadline if that comes before the grace (see test_node).
    handle = await start_leaf(env, run, deadline_in_s=2)

    result = await ended(handle)

    assert (result.status, result.answer, result.error) == (Status.ABORTED, None, "stopped")
    assert result.cost_usd == "0"
    assert run.statuses(handle.id) == [Status.ABORTED]
    assert len(run.leaves) == 1
