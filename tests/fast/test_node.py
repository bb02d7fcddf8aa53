"""``RLMNode``'s loop against stub activities: answers, the iteration limit and its forced final request,
an operator's pause, budget holds, abort and the run's deadline."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment

from orchestrator.vocabulary import Outcome, Status
from orchestrator.workflows import RLMNode
from orchestrator.workflows.types import (
    ExecuteInput,
    ExecuteOutput,
    GenerateInput,
    GenerateOutput,
    Limits,
    Text,
)
from tests.fast.stubs import (
    STOPPED,
    Generate,
    Stubs,
    cell,
    code,
    current_details,
    ended,
    final,
    refused,
    start_root,
    state_becomes,
)

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]


async def test_an_answer_set_in_a_cell_completes_the_node(env: WorkflowEnvironment, stubs: Stubs) -> None:
    run = stubs.scenario(generate=lambda inp: code("42"))
    handle = await start_root(env, run)

    result = await ended(handle)

    assert (result.status, result.answer, result.error) == (Status.COMPLETED, Text(inline="42"), None)
    assert (result.iterations, result.cost_usd) == (1, "0.01")
    assert run.statuses(handle.id) == [Status.RUNNING, Status.COMPLETED]
    assert run.released == [handle.id]  # it ran a cell: its sandbox is removed


def scripted_forced_turn(forced_turn: GenerateOutput) -> tuple[list[bool], Generate]:
    """Code without an answer on every normal turn, ``forced_turn`` on the forced final one."""
    forced: list[bool] = []

    def generate(inp: GenerateInput) -> GenerateOutput:
        forced.append(inp.forced_final)
        return forced_turn if inp.forced_final else code("x = 1")

    return forced, generate


async def no_answer(inp: ExecuteInput) -> ExecuteOutput:
    return cell(inp)


async def test_the_iteration_limit_asks_once_for_a_final_answer(
    env: WorkflowEnvironment, stubs: Stubs
) -> None:
    forced, generate = scripted_forced_turn(final("the forced answer"))
    run = stubs.scenario(generate=generate, execute=no_answer)
    handle = await start_root(env, run, Limits(max_iterations=2))

    result = await ended(handle)

    assert (result.status, result.answer) == (Status.COMPLETED, Text(inline="the forced answer"))
    assert result.iterations == 3
    assert forced == [False, False, True]
    assert len(run.executed) == 2


async def test_no_answer_after_the_forced_final_request_fails(env: WorkflowEnvironment, stubs: Stubs) -> None:
    forced, generate = scripted_forced_turn(code("still no answer"))
    run = stubs.scenario(generate=generate, execute=no_answer)
    handle = await start_root(env, run, Limits(max_iterations=2))

    result = await ended(handle)

    assert (result.status, result.answer) == (Status.FAILED, None)
    assert result.error == "no answer after the forced final request"
    assert forced == [False, False, True]
    assert len(run.executed) == 2  # the forced turn's code is not run
    assert run.statuses(handle.id)[-1] == Status.FAILED
    # The Web UI's current details say why it gave up.
    details = await current_details(handle)
    assert details.startswith(
        "**Iteration** 3 (the forced final one) · **failed**: no answer after the forced final request"
    )


async def test_the_forced_final_request_keeps_a_partial_answer(
    env: WorkflowEnvironment, stubs: Stubs
) -> None:
    async def partial(inp: ExecuteInput) -> ExecuteOutput:
        return cell(inp, f"partial {inp.iteration}")

    _, generate = scripted_forced_turn(code("still no answer"))
    run = stubs.scenario(generate=generate, execute=partial)
    handle = await start_root(env, run, Limits(max_iterations=2))

    result = await ended(handle)

    assert (result.status, result.answer) == (Status.COMPLETED, Text(inline="partial 2"))


async def test_an_operator_pause_holds_the_node_before_its_next_step(
    env: WorkflowEnvironment, stubs: Stubs
) -> None:
    async def paused_during_the_cell(inp: ExecuteInput) -> ExecuteOutput:
        if inp.iteration == 1:
            await env.client.get_workflow_handle(inp.node.node_id).signal(RLMNode.pause)
            return cell(inp, "partial")
        return cell(inp, "done", ready=True)

    run = stubs.scenario(generate=lambda inp: code("x"), execute=paused_during_the_cell)
    handle = await start_root(env, run)

    state = await state_becomes(handle, Status.PAUSED)
    assert (state.iteration, state.step) == (2, Status.PAUSED)
    assert state.message == "paused by an operator (rlm pause)"
    assert len(run.generated) == 1  # held before the second model call
    await handle.signal(RLMNode.resume)
    result = await ended(handle)

    assert (result.status, result.answer) == (Status.COMPLETED, Text(inline="done"))
    assert run.statuses(handle.id) == [Status.RUNNING, Status.PAUSED, Status.RUNNING, Status.COMPLETED]


def refused_first(times: int) -> Generate:
    calls: list[int] = []

    def generate(inp: GenerateInput) -> GenerateOutput:
        calls.append(inp.iteration)
        return refused() if len(calls) <= times else code("42")

    return generate


async def test_a_budget_refusal_holds_the_node_until_one_resume(
    env: WorkflowEnvironment, stubs: Stubs
) -> None:
    run = stubs.scenario(generate=refused_first(1))
    handle = await start_root(env, run)

    state = await state_becomes(handle, Status.PAUSED_BUDGET)
    assert state.message == "tenant budget exhausted"
    assert len(run.generated) == 1
    assert "· **paused_budget**: tenant budget exhausted" in await current_details(handle)
    await handle.signal(RLMNode.resume)
    result = await ended(handle)

    assert (result.status, result.answer) == (Status.COMPLETED, Text(inline="42"))
    assert [g.iteration for g in run.generated] == [1, 1]  # the refused call is asked again
    assert run.statuses(handle.id) == [Status.RUNNING, Status.PAUSED_BUDGET, Status.RUNNING, Status.COMPLETED]


async def test_a_resume_sent_while_the_refused_call_ran_counts(
    env: WorkflowEnvironment, stubs: Stubs
) -> None:
    async def resumed_meanwhile(inp: GenerateInput) -> GenerateOutput:
        if len(run.generated) > 1:
            return code("42")
        # The operator raised the budget and resumed before the refusal came back.
        await env.client.get_workflow_handle(inp.node.node_id).signal(RLMNode.resume)
        return refused()

    run = stubs.scenario(generate=resumed_meanwhile)
    handle = await start_root(env, run)

    result = await ended(handle)

    assert result.status == Status.COMPLETED
    assert len(run.generated) == 2
    assert run.statuses(handle.id) == [Status.RUNNING, Status.PAUSED_BUDGET, Status.RUNNING, Status.COMPLETED]


async def test_abort_while_held_for_budget_ends_the_node_aborted(
    env: WorkflowEnvironment, stubs: Stubs
) -> None:
    run = stubs.scenario(generate=lambda inp: refused())
    handle = await start_root(env, run)

    await state_becomes(handle, Status.PAUSED_BUDGET)
    await handle.signal(RLMNode.abort)
    result = await ended(handle)

    assert (result.status, result.answer) == (Status.ABORTED, None)
    assert result.error == "aborted while paused for budget: tenant budget exhausted"
    assert run.statuses(handle.id) == [Status.RUNNING, Status.PAUSED_BUDGET, Status.ABORTED]
    assert run.released == []  # no cell ran, no sandbox to remove


async def test_cancelling_a_paused_node_records_it_aborted(env: WorkflowEnvironment, stubs: Stubs) -> None:
    async def partial(inp: ExecuteInput) -> ExecuteOutput:
        await env.client.get_workflow_handle(inp.node.node_id).signal(RLMNode.pause)
        return cell(inp, "partial")

    run = stubs.scenario(generate=lambda inp: code("x"), execute=partial)
    handle = await start_root(env, run)

    await state_becomes(handle, Status.PAUSED)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await ended(handle)

    assert isinstance(failure.value.cause, CancelledError)
    assert run.statuses(handle.id) == [Status.RUNNING, Status.PAUSED, Status.ABORTED]
    assert run.events[-1].answer == Text(inline="partial")
    assert run.released == [handle.id]


async def test_the_deadline_ends_a_held_node_timed_out_with_its_partial_answer(
    env: WorkflowEnvironment, stubs: Stubs
) -> None:
    async def partial(inp: ExecuteInput) -> ExecuteOutput:
        return cell(inp, "partial")

    run = stubs.scenario(generate=lambda inp: code("x") if inp.iteration == 1 else refused(), execute=partial)
    # An hour of the test server's time: waiting for the result skips it.
    handle = await start_root(env, run, deadline_in_s=3600)

    result = await ended(handle)

    assert (result.status, result.answer) == (Status.TIMED_OUT, Text(inline="partial"))
    assert result.error == "paused for budget until the deadline: tenant budget exhausted"
    assert run.statuses(handle.id) == [Status.RUNNING, Status.PAUSED_BUDGET, Status.TIMED_OUT]
    assert run.released == [handle.id]


async def test_the_deadline_stops_a_running_cell(env: WorkflowEnvironment, stubs: Stubs) -> None:
    async def runs_past_the_deadline(inp: ExecuteInput) -> ExecuteOutput:
        if inp.iteration == 1:
            return cell(inp, "partial")
        await env.sleep(120)
        return cell(inp, "too late", ready=True)

    run = stubs.scenario(generate=lambda inp: code("x"), execute=runs_past_the_deadline)
    handle = await start_root(env, run, deadline_in_s=60)

    result = await ended(handle)

    assert (result.status, result.answer) == (Status.TIMED_OUT, Text(inline="partial"))
    assert result.error == "the run's deadline passed while a step was running"
    assert run.released == [handle.id]


async def test_no_step_starts_past_the_deadline(env: WorkflowEnvironment, stubs: Stubs) -> None:
    run = stubs.scenario()
    handle = await start_root(env, run, deadline_in_s=-1)

    result = await ended(handle)

    assert (result.status, result.error) == (Status.TIMED_OUT, "the run's deadline passed")
    assert run.generated == []
    assert run.statuses(handle.id) == [Status.RUNNING, Status.TIMED_OUT]


async def test_a_model_call_stopped_for_an_abort_ends_the_node_cancelled(
    env: WorkflowEnvironment, stubs: Stubs
) -> None:
    """The worker stopped the node's ``generate`` for an abort: with the cancel that follows, the node
    ends cancelled; had the cancel never come, it ends ``aborted`` after the grace, with the reason."""

    async def stopped_and_cancelled(inp: GenerateInput) -> GenerateOutput:
        await env.client.get_workflow_handle(inp.node.node_id).cancel()
        return GenerateOutput(status=Outcome.ABORTED, message=STOPPED.format(node=inp.node.node_id))

    cancelled = stubs.scenario(generate=stopped_and_cancelled)
    handle = await start_root(env, cancelled)
    with pytest.raises(WorkflowFailureError) as failure:
        await ended(handle)
    assert isinstance(failure.value.cause, CancelledError)
    # `generate` is a remote activity: the node takes the cancel while it runs. Its completion, coming
    # after, can make the server refuse that task and the record runs again (it is idempotent).
    statuses = cancelled.statuses(handle.id)
    assert statuses[0] == Status.RUNNING and set(statuses[1:]) == {Status.ABORTED}, cancelled.events
    assert cancelled.events[-1].error == "aborted by an operator (workflow cancelled)"


async def test_a_model_call_stopped_for_an_abort_whose_cancel_never_comes_ends_the_node_aborted(
    env: WorkflowEnvironment, stubs: Stubs
) -> None:
    alone = stubs.scenario(generate=lambda inp: GenerateOutput(status=Outcome.ABORTED, message="stopped"))
    # The wait for the cancel ends at the deadline if that comes before the grace: a short one keeps
    # this test off the test server's clock skipping (an earlier test's cell may still hold it).
    handle = await start_root(env, alone, deadline_in_s=2)
    result = await ended(handle)
    assert (result.status, result.answer, result.error) == (Status.ABORTED, None, "stopped")
    assert alone.statuses(handle.id) == [Status.RUNNING, Status.ABORTED]
    assert len(alone.generated) == 1
