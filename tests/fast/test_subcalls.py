"""The ``subcall`` Update as a running cell sends it: ``max_subcalls``, batches with a failed child, a
re-asked batch, and an ``rlm_query`` child node."""

from __future__ import annotations

import dataclasses
import json

import pytest
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from orchestrator.vocabulary import AUTO_INLINE_FROM, LeafMode, Outcome, Status, SubcallKind
from orchestrator.workflows.types import (
    ExecuteInput,
    ExecuteOutput,
    LeafCallOutput,
    LeafInput,
    Limits,
    SubcallReply,
    Text,
    child_id,
    failed_item,
    text_sha256,
)
from tests.conftest import LEAF_MECHANISMS
from tests.fast.stubs import Stubs, cell, current_details, echo_leaf, ended, fails_for_good, start_root

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]


async def test_a_call_past_max_subcalls_is_refused_and_starts_nothing(
    env: WorkflowEnvironment, stubs: Stubs
) -> None:
    async def two_batches(inp: ExecuteInput) -> ExecuteOutput:
        first = await stubs.ask(inp, 1, SubcallKind.LLM, ["a", "b"])
        second = await stubs.ask(inp, 2, SubcallKind.LLM, ["c", "d"])
        return cell(inp, "done", ready=True, started=first.started + second.started)

    run = stubs.scenario(execute=two_batches)
    handle = await start_root(env, run, Limits(max_subcalls=3))

    result = await ended(handle)

    first, second = run.replies
    assert first.answers == [Text(inline="answer to a"), Text(inline="answer to b")]
    assert first.started == 2
    assert second.error == (
        "max_subcalls reached: this node may make 3 sub-calls, has made 2, and this call asks for 2 more; "
        "batch several questions into one prompt or use bigger chunks"
    )
    assert (second.answers, second.started) == ([], 0)
    assert sorted(leaf.prompt.inline or "" for leaf in run.leaves) == ["a", "b"]
    assert result.status == Status.COMPLETED


def fails_on_bad(inp: LeafInput) -> LeafCallOutput:
    if inp.prompt.inline == "bad":
        raise fails_for_good("the prompt does not fit the model's context window")
    return echo_leaf(inp)


@pytest.mark.parametrize("leaf_mode", LEAF_MECHANISMS)
async def test_a_batch_keeps_the_answers_and_marks_the_failed_item(
    env: WorkflowEnvironment, stubs: Stubs, leaf_mode: str
) -> None:
    async def batch_asked_twice(inp: ExecuteInput) -> ExecuteOutput:
        reply = await stubs.ask(inp, 1, SubcallKind.LLM, ["a", "bad", "c"])
        # A retried cell re-sends the same update id: the first reply, nothing started again.
        await stubs.ask(inp, 1, SubcallKind.LLM, ["a", "bad", "c"])
        return cell(inp, "done", ready=True, started=reply.started)

    run = stubs.scenario(execute=batch_asked_twice, leaf=fails_on_bad)
    handle = await start_root(env, run, Limits(leaf_mode=leaf_mode))

    result = await ended(handle)

    bad = child_id(handle.id, 2)
    reason = "the prompt does not fit the model's context window"
    expected = SubcallReply(
        answers=[
            Text(inline="answer to a"),
            Text(inline=failed_item(bad, Status.FAILED, reason)),
            Text(inline="answer to c"),
        ],
        started=3,
        failed=[1],
    )
    assert run.replies == [expected, expected]
    assert len(run.leaves) == 3
    assert run.statuses(bad)[-1] == Status.FAILED
    assert result.status == Status.COMPLETED
    assert "**Sub-calls** 3 of 3 finished, 1 without an answer" in await current_details(handle)


async def test_auto_runs_a_narrow_batch_as_leaf_workflows_and_a_wide_one_inline(
    env: WorkflowEnvironment, stubs: Stubs
) -> None:
    wide = [f"w{i}" for i in range(AUTO_INLINE_FROM)]

    async def narrow_then_wide(inp: ExecuteInput) -> ExecuteOutput:
        first = await stubs.ask(inp, 1, SubcallKind.LLM, ["a", "b"])
        second = await stubs.ask(inp, 2, SubcallKind.LLM, wide)
        return cell(inp, "done", ready=True, started=first.started + second.started)

    run = stubs.scenario(execute=narrow_then_wide)
    handle = await start_root(env, run, Limits())

    result = await ended(handle)

    assert result.status == Status.COMPLETED
    assert [len(reply.answers) for reply in run.replies] == [2, AUTO_INLINE_FROM]
    assert len(run.leaves) == 2 + AUTO_INLINE_FROM
    for number in (1, 2):  # the narrow batch's leaves are workflows of their own
        assert (await env.client.get_workflow_handle(child_id(handle.id, number)).describe()).id
    for number in (3, 2 + AUTO_INLINE_FROM):  # the wide batch's ran inside the root
        with pytest.raises(RPCError) as err:
            await env.client.get_workflow_handle(child_id(handle.id, number)).describe()
        assert err.value.status == RPCStatusCode.NOT_FOUND


async def test_an_rlm_query_runs_a_child_node_and_returns_its_answer(
    env: WorkflowEnvironment, stubs: Stubs
) -> None:
    async def asks_a_child(inp: ExecuteInput) -> ExecuteOutput:
        if inp.node.depth > 0:
            return cell(inp, f"child of {inp.node.parent_id} read {inp.node.context.inline}", ready=True)
        reply = await stubs.ask(inp, 1, SubcallKind.RLM, ["chunk 1"])
        return cell(inp, reply.answers[0].inline, ready=True, started=reply.started)

    run = stubs.scenario(execute=asks_a_child)
    handle = await start_root(env, run, Limits(max_depth=1))

    result = await ended(handle)

    child = child_id(handle.id, 1)
    assert result.answer == Text(inline=f"child of {handle.id} read chunk 1")
    assert run.statuses(child) == [Status.RUNNING, Status.COMPLETED]
    assert run.leaves == []
    assert sorted(run.released) == sorted([handle.id, child])


async def test_continue_as_new_carries_the_nodes_state_and_its_childrens_spend(
    env: WorkflowEnvironment, stubs: Stubs
) -> None:
    async def asks_then_answers(inp: ExecuteInput) -> ExecuteOutput:
        if inp.iteration == 1:
            reply = await stubs.ask(inp, 1, SubcallKind.LLM, ["a", "b"])
            return cell(inp, "partial", started=reply.started)
        return cell(inp, "done", ready=True)

    run = stubs.scenario(execute=asks_then_answers)
    handle = await start_root(env, run, Limits(max_iterations=3, iterations_per_run=1))

    result = await ended(handle)

    # Two model turns at 0.01 and two leaves at 0.001: the leaves were paid before continue-as-new.
    assert (result.status, result.answer, result.cost_usd) == (Status.COMPLETED, Text(inline="done"), "0.022")
    assert result.iterations == 2
    second = run.executed[1]
    assert (second.iteration, second.number, second.children_before) == (2, 2, 2)
    assert second.node.carry is None  # the carried state stays in the workflow
    # The sub-calls' count in the Web UI starts from the carried states.
    assert "**Sub-calls** 2 of 2 finished\n" in await current_details(handle)


def long_answer(inp: LeafInput) -> LeafCallOutput:
    if inp.prompt.inline == "bad":
        raise fails_for_good("x" * 400)
    # A real answer rides inline up to 256 characters (1.5 KB in Temporal's JSON when none is ASCII), so
    # about 700 of them pass the reply's budget; these stand-ins get there with 60.
    answer = Text(inline=f"{inp.prompt.inline}:" + "答" * 3_000)
    return LeafCallOutput(status=Outcome.OK, answer=answer, cost_usd="0.001")


async def test_a_reply_too_big_for_one_payload_names_its_answers_blobs(
    env: WorkflowEnvironment, stubs: Stubs
) -> None:
    prompts = [f"p{i}" for i in range(60)] + ["bad"]

    async def wide_batch(inp: ExecuteInput) -> ExecuteOutput:
        reply = await stubs.ask(inp, 1, SubcallKind.LLM, prompts)
        return cell(inp, "done", ready=True, started=reply.started)

    run = stubs.scenario(execute=wide_batch, leaf=long_answer)
    handle = await start_root(env, run, Limits(leaf_mode=LeafMode.INLINE))

    result = await ended(handle)

    (reply,) = run.replies
    assert result.status == Status.COMPLETED and reply.started == 61 and reply.failed == [60]
    # Inline, the answers would take 1.1 MB: each is named by its blob instead (a leaf stores its answer
    # under the text's hash), and the failure keeps the first 100 characters of its reason.
    assert reply.answers[:60] == [Text(blob=text_sha256(f"p{i}:" + "答" * 3_000)) for i in range(60)]
    marker = reply.answers[60].inline or ""
    assert marker.startswith(f"Error: sub-call {child_id(handle.id, 61)} ended failed: ")
    assert marker.endswith(": " + "x" * 100)
    assert len(json.dumps(dataclasses.asdict(reply))) < 10_000


async def test_a_batch_of_more_than_five_thousand_prompts_is_refused(
    env: WorkflowEnvironment, stubs: Stubs
) -> None:
    async def too_wide(inp: ExecuteInput) -> ExecuteOutput:
        reply = await stubs.ask(inp, 1, SubcallKind.LLM, [f"p{i}" for i in range(5_001)])
        return cell(inp, "done", ready=True, started=reply.started)

    run = stubs.scenario(execute=too_wide)
    handle = await start_root(env, run, Limits(leaf_mode=LeafMode.INLINE, max_subcalls=10_000))

    await ended(handle)

    (reply,) = run.replies
    assert reply.error == (
        "a batched call takes at most 5,000 prompts and this one has 5,001; split them over several calls, "
        "or put several questions in each prompt"
    )
    assert (reply.started, run.leaves) == (0, [])


@pytest.mark.parametrize(("heartbeat_timeout_s", "task_timeout_s"), [(3, 10), (45, 45), (600, 120)])
async def test_nodes_and_leaves_get_the_runs_heartbeat_timeout_for_their_workflow_tasks(
    env: WorkflowEnvironment, stubs: Stubs, heartbeat_timeout_s: float, task_timeout_s: float
) -> None:
    # Their model calls run inside those tasks: at Temporal's 10 s a busy worker's late keep-alive of a
    # task made its calls run twice.
    async def asks_a_node_and_a_leaf(inp: ExecuteInput) -> ExecuteOutput:
        if inp.node.depth > 0:
            return cell(inp, "child", ready=True)
        if inp.iteration == 1:
            reply = await stubs.ask(inp, 1, SubcallKind.RLM, ["chunk"])
            return cell(inp, "partial", started=reply.started)
        reply = await stubs.ask(inp, 1, SubcallKind.LLM, ["a"])
        return cell(inp, reply.answers[0].inline, ready=True, started=reply.started)

    run = stubs.scenario(execute=asks_a_node_and_a_leaf)
    limits = Limits(
        max_depth=1,
        iterations_per_run=1,
        leaf_mode=LeafMode.WORKFLOW,
        heartbeat_timeout_s=heartbeat_timeout_s,
    )
    handle = await start_root(env, run, limits)

    assert (await ended(handle)).answer == Text(inline="answer to a")
    ids = {"RLMNode": child_id(handle.id, 1), "Leaf": child_id(handle.id, 2)}
    for kind, wid in ids.items():
        child = await env.client.get_workflow_handle(wid).describe()
        assert child.workflow_type == kind
        assert (
            child.raw_description.execution_config.default_workflow_task_timeout.ToSeconds() == task_timeout_s
        )
    # The root's second run, after continue-as-new, keeps its first run's timeout.
    root = await handle.describe()
    assert root.raw_description.workflow_execution_info.first_run_id != root.run_id
    assert root.raw_description.execution_config.default_workflow_task_timeout.ToSeconds() == task_timeout_s
