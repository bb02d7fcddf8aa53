"""``RlmLauncher``: what a Temporal Schedule starts on each fire; it starts one run with a fresh id.

The run id is the launcher's own workflow id, which the Schedule makes unique per fire by appending
the fire time (``nightly-2026-11-21T02:00:00Z``), so a schedule's runs are found from its recent
actions and the store's run row alike. The ``launch`` activity creates the run in the store (with
``schedule`` in its config) from the query and context stored when the schedule was created; the
launcher then starts the root ``RLMNode`` as its child and waits for it, so the Web UI shows the tree
under the fire, and the schedule's overlap policy sees a fire as running until its run ends. The child
is abandoned, not cancelled, when the launcher is closed: terminating a launcher never kills a run.

Deterministic code only; the activity is named by string.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ChildWorkflowError
from temporalio.workflow import ParentClosePolicy

from orchestrator.vocabulary import Status
from orchestrator.workflows import common
from orchestrator.workflows.node import RLMNode
from orchestrator.workflows.types import Limits, NodeInput, NodeResult, Text

LAUNCH = "launch"
LAUNCH_TIMEOUT = timedelta(seconds=60)


@dataclass(frozen=True)
class LaunchInput:
    """A schedule's action: the run to start on each fire (query and context as blob references)."""

    schedule: str
    tenant: str
    query: Text
    context: Text
    context_suffix: str
    model: str
    sub_model: str
    deadline_s: float
    budget_usd: str | None
    limits: Limits


@dataclass(frozen=True)
class LaunchRequest:
    """Input of the ``launch`` activity: the fire's run id and absolute deadline, fixed by the launcher."""

    launch: LaunchInput
    run_id: str
    deadline_epoch_s: float


@dataclass(frozen=True)
class LaunchOutput:
    root: NodeInput
    created: bool
    memo: dict[str, str]


@dataclass(frozen=True)
class LaunchResult:
    run_id: str
    status: str
    error: str | None = None


@workflow.defn(name="RlmLauncher")
class Launcher:
    @workflow.run
    async def run(self, inp: LaunchInput) -> LaunchResult:
        run_id = workflow.info().workflow_id
        deadline = workflow.now().timestamp() + inp.deadline_s
        try:
            out: LaunchOutput = await workflow.execute_activity(
                LAUNCH,
                LaunchRequest(inp, run_id, deadline),
                result_type=LaunchOutput,
                start_to_close_timeout=LAUNCH_TIMEOUT,
                retry_policy=common.STORE_RETRY,
            )
        except ActivityError as err:
            return LaunchResult(run_id, Status.FAILED, f"launch failed: {err.cause or err}")
        try:
            result: NodeResult = await workflow.execute_child_workflow(
                RLMNode.run,
                out.root,
                id=out.root.node_id,
                search_attributes=common.search_attributes(out.root.run, 0, Status.RUNNING),
                memo=dict(out.memo),
                parent_close_policy=ParentClosePolicy.ABANDON,
                task_timeout=common.task_timeout(out.root.run),
            )
        except ChildWorkflowError as err:
            return LaunchResult(run_id, Status.FAILED, f"root {out.root.node_id} failed: {err.cause or err}")
        return LaunchResult(run_id, result.status, result.error)
