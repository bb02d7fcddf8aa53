"""A node whose conversation outgrows its model's context window compacts and answers.

Policy ``long`` notes the magic number in a REPL variable, prints a piece of the context per
iteration, then answers from that variable. With a window of 2,500 tokens its fifth prompt no longer
fits: without compaction the node fails with the context-window error; with it, older iterations are
summarised (twice or more), the REPL variable survives, and every model call, compactions included,
is billed once, even when the worker dies around a compaction. Real dev server, Docker engine,
PostgreSQL store and litellm; the model is the scripted one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select
from temporalio.service import RPCError
from temporalio.worker import Worker

from orchestrator.activities.cells import CellActivities, SessionCache
from orchestrator.activities.deps import Deps
from orchestrator.activities.metering import Prepared
from orchestrator.activities.model import ModelActivities, _Compaction
from orchestrator.activities.records import RecordActivities
from orchestrator.llm.complete import CompletionResult
from orchestrator.protocol.compaction import is_summary_request
from orchestrator.settings import Settings
from orchestrator.store import from_nanos, get_run, list_steps
from orchestrator.store.models import LedgerEntry, Node, Step
from orchestrator.transcripts.load import load_transcript
from orchestrator.transcripts.render import render
from orchestrator.vocabulary import StepKind
from orchestrator.workflow_runner import workflow_runner
from orchestrator.workflows import WORKFLOWS
from orchestrator.workflows.types import GenerateInput, Limits, RunSpec
from sandbox import SandboxLimits
from tests.orchestrator.harness import Harness, word_context

MODEL = "scripted/long?context_window=2500&steps=10"
QUERY = "What is the magic number?"
NEEDLE = "The magic number is 4817305."


def _context(tmp_path: Path) -> Path:
    path, _ = word_context(tmp_path / "c.txt", 4_000, needle=NEEDLE)
    return path


def _compactions(harness: Harness, run_id: str) -> list[Step]:
    with harness.sessions() as s:
        return [step for step in list_steps(s, f"{run_id}/0") if step.kind == StepKind.COMPACT]


def _assert_billed_once(harness: Harness, run_id: str) -> Decimal:
    """Every settled ledger entry has its recorded model-call step (compactions included), the run's
    spend is exactly their sum, and nothing stays reserved."""
    with harness.sessions() as s:
        kinds = (StepKind.GENERATE, StepKind.LEAF, StepKind.COMPACT)
        count, nanos = s.execute(
            select(func.count(), func.coalesce(func.sum(Step.cost_nanos), 0))
            .join(Node, Node.node_id == Step.node_id)
            .where(Node.run_id == run_id, Step.kind.in_(kinds))
        ).one()
        settled = s.execute(
            select(func.count()).where(LedgerEntry.run_id == run_id, LedgerEntry.kind == "settle")
        ).scalar_one()
        run = get_run(s, run_id)
        assert settled == count
        assert run.spent == from_nanos(int(nanos)) and run.reserved == 0
        return run.spent


async def test_a_node_past_its_window_answers_after_compacting(harness: Harness, tmp_path: Path) -> None:
    out = await asyncio.wait_for(harness.run(QUERY, _context(tmp_path), model=MODEL), 240)

    assert out.result.status == "completed", out.result.error
    assert out.summary.answer == "4817305"  # read back from the REPL variable set in iteration 1
    compactions = _compactions(harness, out.run_id)
    assert len(compactions) >= 2  # a later compaction summarises the previous summary too
    lasts = [(c.data or {})["last"] for c in compactions]
    assert lasts == sorted(lasts) and all(
        last < c.iteration for last, c in zip(lasts, compactions, strict=True)
    )
    assert all(c.cost > 0 and c.prompt_tokens > 0 for c in compactions)
    spent = _assert_billed_once(harness, out.run_id)
    assert out.summary.cost == spent

    shown = render(load_transcript(harness.sessions, out.run_id))
    first = compactions[0]
    assert f"── compaction before iteration {first.iteration}: iterations 1..{lasts[0]} summarised" in shown
    assert "REPL variables set: found\n" in shown


async def test_compact_at_zero_keeps_the_context_window_error(harness: Harness, tmp_path: Path) -> None:
    limits = Limits(heartbeat_timeout_s=10, compact_at=0)
    out = await asyncio.wait_for(harness.run(QUERY, _context(tmp_path), model=MODEL, limits=limits), 240)

    assert out.result.status == "failed"
    assert "context_window" in (out.result.error or "")
    assert _compactions(harness, out.run_id) == []


class _DiesAroundCompactions(ModelActivities):
    """The worker 'dies' (the attempt fails) once after a compaction call returned but before it was
    recorded, and once after one was recorded but before the reply was asked for."""

    def __init__(self, deps: Deps) -> None:
        super().__init__(deps)
        self.summary_calls = 0
        self.records = 0

    async def _call(self, node_id: str, run: RunSpec, model: str, prep: Prepared) -> CompletionResult:
        self.summary_calls += is_summary_request(prep.messages)
        return await super()._call(node_id, run, model, prep)

    def _compact_record(self, inp: GenerateInput, todo: _Compaction, result: CompletionResult) -> None:
        self.records += 1
        if self.records == 1:
            raise RuntimeError("worker died before recording the compaction")
        super()._compact_record(inp, todo, result)
        if self.records == 2:
            raise RuntimeError("worker died after recording the compaction")


async def test_a_compaction_is_billed_once_when_the_worker_dies_around_it(
    harness: Harness, other_queue: Settings, tmp_path: Path
) -> None:
    deps = Deps(settings=other_queue, sessions=harness.sessions, client=harness.client, worker_id="compact")
    models = _DiesAroundCompactions(deps)
    cache = SessionCache()
    cells = CellActivities(deps, cache, SandboxLimits())
    worker = Worker(
        harness.client,
        task_queue=other_queue.task_queue,
        workflows=WORKFLOWS,
        activities=[
            models.generate,
            models.leaf_call,
            cells.execute,
            cells.release_sandbox,
            RecordActivities(deps).record_node,
        ],
        activity_executor=concurrent.futures.ThreadPoolExecutor(4),
        workflow_runner=workflow_runner(harness.client.data_converter),
    )
    async with worker:
        handle = await harness.start(
            QUERY, _context(tmp_path), model=MODEL, task_queue=other_queue.task_queue
        )
        try:
            out = await asyncio.wait_for(harness.finish(handle), 240)
        finally:
            with contextlib.suppress(RPCError):  # ended already
                await handle.terminate("test over")
            cache.close_all()

    assert out.result.status == "completed", out.result.error
    assert out.summary.answer == "4817305"
    compactions = _compactions(harness, out.run_id)
    # The call whose record was lost ran again; the recorded one was found, not called again.
    assert models.summary_calls == len(compactions) + 1
    assert models.records == len(compactions) + 1
    _assert_billed_once(harness, out.run_id)
