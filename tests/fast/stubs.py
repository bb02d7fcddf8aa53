"""Stub activities registered under the workflows' real activity names, scripted per run.

The workflows only see the activities' names and dataclasses, so a scripted ``generate``, ``execute``
and ``leaf_call`` drive ``RLMNode`` and ``Leaf`` through every branch without a model, a sandbox or a
store. ``record_node`` and ``release_sandbox`` keep what they were told in memory for the assertions.
A scripted cell that makes sub-calls sends the ``subcall`` Update to its own node, as the real
``execute`` activity does from inside a running cell.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from orchestrator.vocabulary import NodeKind, Outcome, Status, SubcallKind
from orchestrator.workflows import RLMNode
from orchestrator.workflows.common import (
    EXECUTE,
    GENERATE,
    LEAF_CALL,
    RECORD_NODE,
    RELEASE_SANDBOX,
    search_attributes,
    task_timeout,
)
from orchestrator.workflows.types import (
    ExecuteInput,
    ExecuteOutput,
    GenerateInput,
    GenerateOutput,
    LeafCallOutput,
    LeafInput,
    Limits,
    NodeEvent,
    NodeInput,
    NodeResult,
    NodeState,
    RunSpec,
    SubcallBatch,
    SubcallReply,
    Text,
    root_id,
    update_id,
)

Generate = Callable[[GenerateInput], GenerateOutput | Awaitable[GenerateOutput]]
Execute = Callable[[ExecuteInput], Awaitable[ExecuteOutput]]
LeafCall = Callable[[LeafInput], LeafCallOutput | Awaitable[LeafCallOutput]]

TASK_QUEUE = f"fast-{uuid.uuid4().hex[:8]}"


def code(source: str) -> GenerateOutput:
    """A model turn with one code block."""
    return GenerateOutput(status=Outcome.OK, blocks=[Text(inline=source)], cost_usd="0.01")


def refused(message: str = "tenant budget exhausted") -> GenerateOutput:
    return GenerateOutput(status=Outcome.BUDGET, message=message)


def final(answer: str) -> GenerateOutput:
    """A plain-text answer (what the forced final turn returns)."""
    return GenerateOutput(status=Outcome.OK, final=Text(inline=answer), cost_usd="0.01")


def cell(
    inp: ExecuteInput, answer: str | None = None, *, ready: bool = False, started: int = 0
) -> ExecuteOutput:
    """A finished cell: ``answer`` set (``ready``: by ``FINAL``), ``started`` children started by it."""
    text = Text(inline=answer) if answer is not None else None
    return ExecuteOutput(answer=text, ready=ready, children_after=inp.children_before + started)


async def answers_with_block(inp: ExecuteInput) -> ExecuteOutput:
    """The default cell: it sets the answer to the block's code, and the node is done."""
    return cell(inp, inp.code.inline, ready=True)


def echo_leaf(inp: LeafInput) -> LeafCallOutput:
    answer = Text(inline=f"answer to {inp.prompt.inline}")
    return LeafCallOutput(status=Outcome.OK, answer=answer, cost_usd="0.001")


def leaf_refused(inp: LeafInput) -> LeafCallOutput:
    return LeafCallOutput(status=Outcome.BUDGET, message="tenant budget exhausted")


# What the worker's abort watch makes of a call it stopped (``activities.abort_watch``).
STOPPED = "the model call of {node} was stopped: {node} was aborted by an operator"


@dataclass
class Scenario:
    """One run's script, and what its workflows did through the stubs."""

    run_id: str
    generate: Generate
    execute: Execute
    leaf: LeafCall
    generated: list[GenerateInput] = field(default_factory=list)
    executed: list[ExecuteInput] = field(default_factory=list)
    leaves: list[LeafInput] = field(default_factory=list)
    events: list[NodeEvent] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    replies: list[SubcallReply] = field(default_factory=list)
    started: list[str] = field(default_factory=list)  # the workflows the test started

    def statuses(self, node_id: str) -> list[str]:
        return [e.status for e in self.events if e.node_id == node_id]


class Stubs:
    """The activities of one test worker; each call finds its run's ``Scenario`` by run id."""

    def __init__(self, client: Client) -> None:
        self.client = client  # what a cell sends its sub-calls through
        self._scenarios: dict[str, Scenario] = {}

    def scenario(
        self,
        generate: Generate = lambda inp: code("FINAL"),
        execute: Execute = answers_with_block,
        leaf: LeafCall = echo_leaf,
    ) -> Scenario:
        """A new run (its own run id) scripted with these steps."""
        made = Scenario(f"fast-{uuid.uuid4().hex[:10]}", generate, execute, leaf)
        self._scenarios[made.run_id] = made
        return made

    async def end_open_workflows(self) -> None:
        """Terminate what the tests started and left running (a broken workflow that loops would
        otherwise keep the shared worker busy and fail every later test); children end with their parent."""
        for scenario in self._scenarios.values():
            for workflow_id in scenario.started:
                with contextlib.suppress(RPCError):  # it has already ended
                    await self.client.get_workflow_handle(workflow_id).terminate("the test ended")
            scenario.started.clear()

    async def ask(self, inp: ExecuteInput, seq: int, kind: SubcallKind, prompts: list[str]) -> SubcallReply:
        """What a cell's ``llm_query_batched``/``rlm_query_batched`` does: the ``subcall`` Update."""
        texts = [Text(inline=p) for p in prompts]
        batch = SubcallBatch(iteration=inp.iteration, index=inp.index, seq=seq, kind=kind, prompts=texts)
        handle = self.client.get_workflow_handle(inp.node.node_id)
        uid = update_id(inp.node.node_id, inp.iteration, inp.index, seq)
        reply: SubcallReply = await handle.execute_update(RLMNode.subcall, batch, id=uid)
        self._scenarios[inp.node.run.run_id].replies.append(reply)
        return reply

    @activity.defn(name=GENERATE)
    async def generate(self, inp: GenerateInput) -> GenerateOutput:
        scenario = self._scenarios[inp.node.run.run_id]
        scenario.generated.append(inp)
        out = scenario.generate(inp)
        return await out if inspect.isawaitable(out) else out

    @activity.defn(name=EXECUTE)
    async def execute(self, inp: ExecuteInput) -> ExecuteOutput:
        scenario = self._scenarios[inp.node.run.run_id]
        scenario.executed.append(inp)
        return await scenario.execute(inp)

    @activity.defn(name=LEAF_CALL)
    async def leaf_call(self, inp: LeafInput) -> LeafCallOutput:
        scenario = self._scenarios[inp.run.run_id]
        scenario.leaves.append(inp)
        out = scenario.leaf(inp)
        return await out if inspect.isawaitable(out) else out

    @activity.defn(name=RECORD_NODE)
    async def record_node(self, event: NodeEvent) -> None:
        self._scenarios[event.run_id].events.append(event)

    @activity.defn(name=RELEASE_SANDBOX)
    async def release_sandbox(self, node: NodeInput) -> None:
        self._scenarios[node.run.run_id].released.append(node.node_id)

    @property
    def activities(self) -> list[Callable[..., object]]:
        return [self.generate, self.execute, self.leaf_call, self.record_node, self.release_sandbox]


def fails_for_good(message: str) -> ApplicationError:
    """How the real activities report what a retry cannot fix."""
    return ApplicationError(message, non_retryable=True)


def run_spec(scenario: Scenario, deadline_epoch_s: float, limits: Limits | None = None) -> RunSpec:
    return RunSpec(
        run_id=scenario.run_id,
        tenant="default",
        model="stub/model",
        sub_model="stub/sub",
        deadline_epoch_s=deadline_epoch_s,
        limits=limits or Limits(),
    )


async def start_root(
    env: WorkflowEnvironment, scenario: Scenario, limits: Limits | None = None, deadline_in_s: float = 3600
) -> WorkflowHandle[RLMNode, NodeResult]:
    """Start a run's root node as ``rlm run`` does; the deadline counts in the test server's time."""
    now = (await env.get_current_time()).timestamp()
    run = run_spec(scenario, now + deadline_in_s, limits)
    node = NodeInput(
        run=run,
        node_id=root_id(run.run_id),
        parent_id=None,
        depth=0,
        kind=NodeKind.ROOT,
        model=run.model,
        context=Text(inline="the context"),
    )
    handle = await env.client.start_workflow(
        RLMNode.run,
        node,
        id=node.node_id,
        task_queue=TASK_QUEUE,
        search_attributes=search_attributes(run, 0, Status.RUNNING),
        task_timeout=task_timeout(run),
    )
    scenario.started.append(handle.id)
    return handle


async def ended(handle: WorkflowHandle[Any, NodeResult], within_s: float = 10.0) -> NodeResult:
    """The workflow's result, skipping the test server's time; a workflow broken into a loop fails the
    test within ``within_s`` of real time instead of hanging it."""
    return await asyncio.wait_for(handle.result(), within_s)


async def current_details(handle: WorkflowHandle[Any, NodeResult]) -> str:
    """What the Web UI shows as the workflow's current details (its built-in metadata query)."""
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return str(metadata.current_details)


async def state_becomes(
    handle: WorkflowHandle[Any, NodeResult], status: str, within_s: float = 10.0
) -> NodeState:
    """Poll the ``state`` query until the workflow shows ``status`` (queries do not advance time)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within_s
    while True:
        state: NodeState = await handle.query("state", result_type=NodeState)
        if state.status == status:
            return state
        if loop.time() >= end:
            raise AssertionError(
                f"{handle.id} still shows {state.status!r}, not {status!r}, after {within_s} s"
            )
        await asyncio.sleep(0.05)
