"""One resume is enough: many sub-calls at once under a run budget that covers about half of them;
once the run pauses for budget, raising the budget by the whole run's cost and ONE ``resume`` (the
calls ``rlm budget raise`` and ``rlm resume`` make) finish the run, in both leaf modes.

Refusals still on their way back when the resume arrives are the hard case: the resume must count
for them too. The wide run hits it only by chance; the second test makes it certain with a
stand-in for the model-call step that is refused only after the resume was handled."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import Worker

from orchestrator.activities.cells import CellActivities, SessionCache
from orchestrator.activities.deps import Deps
from orchestrator.activities.model import ModelActivities
from orchestrator.activities.records import RecordActivities
from orchestrator.control import parse_target, raise_budget, resume
from orchestrator.settings import Settings
from orchestrator.store import get_run, list_nodes
from orchestrator.vocabulary import LeafMode, Outcome
from orchestrator.workflow_runner import workflow_runner
from orchestrator.workflows import WORKFLOWS
from orchestrator.workflows.types import LeafCallOutput, LeafInput, Limits, Text
from sandbox import SandboxLimits
from tests.conftest import LEAF_MECHANISMS
from tests.ops.control.billing import assert_billed_once
from tests.ops.control.helpers import eventually
from tests.orchestrator.harness import Harness, word_context

SUBCALLS = 120
# Only the prompt is priced: a leaf's reservation is its cost, so the budget's cover is exact.
LEAF = "scripted/leaf?price_in=100&price_out=0"


@pytest.mark.parametrize("leaf_mode", LEAF_MECHANISMS)
async def test_one_resume_after_a_sufficient_raise_finishes_the_run(
    harness: Harness, tmp_path: Path, leaf_mode: str
) -> None:
    path, expected = word_context(tmp_path / "w.txt", 24_000)
    # About 1,200 characters (300 tokens, 0.03 USD) per prompt: about half of them fit in 1.8 USD.
    handle = await harness.start(
        f"How many times does the word 'ERROR' appear? Use {SUBCALLS} chunks.",
        path,
        model="scripted/mapreduce",
        sub_model=LEAF,
        budget_usd="1.8",
        limits=Limits(leaf_mode=leaf_mode, max_concurrency=SUBCALLS, heartbeat_timeout_s=10),
    )
    run_id = handle.id.rsplit("/", 1)[0]

    async def paused() -> bool | None:
        with harness.sessions() as s:
            return True if any(n.status == "paused_budget" for n in list_nodes(s, run_id)) else None

    await eventually(paused, "a sub-call paused for budget", every_s=0.02)
    raise_budget(harness.sessions, Decimal("10"), run=run_id)
    report = await resume(harness.client, harness.sessions, parse_target(run_id))
    assert report.signalled

    out = await asyncio.wait_for(harness.finish(handle), 120)

    assert out.result.status == "completed", out.result.error
    assert out.summary.answer == str(expected)
    with harness.sessions() as s:
        leaves = [n for n in list_nodes(s, run_id) if n.kind == "leaf"]
        run = get_run(s, run_id)
    assert len(leaves) == SUBCALLS and {n.status for n in leaves} == {"completed"}
    spent = assert_billed_once(harness.sessions, run_id)
    assert run.reserved == 0 and Decimal("1.8") < spent < Decimal("11.8")


class _RefusedOnce:
    """Stands in for the model-call step (``leaf_call``): the first call is refused for budget, but
    only after the test has sent ``resume`` (the operator raised and resumed while it ran)."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    @activity.defn(name="leaf_call")
    async def leaf_call(self, inp: LeafInput) -> LeafCallOutput:
        self.calls += 1
        if self.calls > 1:
            return LeafCallOutput(status=Outcome.OK, answer=Text(inline="42"))
        self.entered.set()
        await self.release.wait()
        return LeafCallOutput(status=Outcome.BUDGET, message="refused by the test's stand-in")


async def _handled(handle: WorkflowHandle[Any, Any]) -> bool | None:
    """True once a workflow task completed after the last signal: its handler has run. While a local
    activity runs, that takes the workflow task's heartbeat (about 8 s): signals wait for it."""
    events = (await handle.fetch_history()).events
    signalled = [
        e.event_id for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    done = [e.event_id for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
    return True if signalled and done and done[-1] > signalled[-1] else None


@pytest.mark.parametrize("leaf_mode", LEAF_MECHANISMS)
async def test_a_resume_sent_while_the_refused_call_ran_counts(
    harness: Harness, other_queue: Settings, tmp_path: Path, leaf_mode: str
) -> None:
    path = tmp_path / "c.txt"
    path.write_text("unused")
    step = _RefusedOnce()
    deps = Deps(
        settings=other_queue, sessions=harness.sessions, client=harness.client, worker_id="one-resume"
    )
    cache = SessionCache()
    cells = CellActivities(deps, cache, SandboxLimits())
    worker = Worker(
        harness.client,
        task_queue=other_queue.task_queue,
        workflows=WORKFLOWS,
        activities=[
            ModelActivities(deps).generate,
            step.leaf_call,
            cells.execute,
            cells.release_sandbox,
            RecordActivities(deps).record_node,
        ],
        activity_executor=concurrent.futures.ThreadPoolExecutor(4),
        workflow_runner=workflow_runner(harness.client.data_converter),
    )
    async with worker:
        root = await harness.start(
            'FINAL(llm_query("What is the answer?"))',
            path,
            model="scripted/code",
            limits=Limits(leaf_mode=leaf_mode, heartbeat_timeout_s=10),
            task_queue=other_queue.task_queue,
        )
        held = root if leaf_mode == LeafMode.INLINE else harness.client.get_workflow_handle(f"{root.id}.1")
        try:
            await asyncio.wait_for(step.entered.wait(), 60)
            await held.signal("resume")
            await eventually(lambda: _handled(held), "the resume handled while the call runs", 60)
            step.release.set()
            result = await asyncio.wait_for(root.result(), 30)
        finally:
            step.release.set()
            with contextlib.suppress(RPCError):  # ended already
                await root.terminate("test over")
            cache.close_all()
    assert result.status == "completed" and result.answer == Text(inline="42")
    assert step.calls == 2
