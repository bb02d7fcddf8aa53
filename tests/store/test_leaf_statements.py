"""What one leaf call writes, on both backends: its recording stores the answer once, a run without a
session closes its reservation without touching any session row, and the totals still equal the ledger.

A leaf's store work is a share of every sub-call's worker CPU (docs/benchmarks.md); these pin the
statements it saves."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import ActivityEnvironment

from orchestrator.activities.deps import Deps
from orchestrator.activities.model import ModelActivities
from orchestrator.llm.complete import CompletionResult
from orchestrator.settings import load_settings
from orchestrator.store import find_step, get_run, get_text, ledger_sums, put_text, set_price, upsert_node
from orchestrator.store.models import Step
from orchestrator.vocabulary import NodeKind, StepKind
from orchestrator.workflows.types import (
    INLINE_CHARS,
    LeafCallOutput,
    LeafInput,
    Limits,
    RunSpec,
    Text,
    child_id,
    root_id,
)
from tests.store.conftest import seed

MODEL = "openai/leaf-statements"


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def _leaf(
    sessions: sessionmaker[Session], engine: Engine, tmp_path: Path, answer: str
) -> tuple[LeafInput, LeafCallOutput, list[str]]:
    seed(sessions, budget="10")
    with sessions.begin() as s:
        set_price(s, MODEL, Decimal("0.000001"), Decimal("0.000002"))
        prompt = Text(blob=put_text(s, "count the records labelled urgent: " + "record; " * 100))
        upsert_node(s, root_id("run-1"), run_id="run-1", kind=NodeKind.RLM, depth=0)
    run = RunSpec(
        run_id="run-1",
        tenant="acme",
        model=MODEL,
        sub_model=MODEL,
        deadline_epoch_s=4_000_000_000.0,
        limits=Limits(),
    )
    parent = root_id("run-1")
    leaf = LeafInput(
        run=run, node_id=child_id(parent, 1), parent_id=parent, depth=1, model=MODEL, prompt=prompt
    )
    deps = Deps(
        settings=load_settings({"RLM_DATA_DIR": str(tmp_path)}),
        sessions=sessions,
        client=None,  # type: ignore[arg-type]  # the model activities never use the client
        worker_id="test",
    )
    models = ModelActivities(deps)
    result = CompletionResult(
        text=answer,
        prompt_tokens=120,
        completion_tokens=30,
        reported_cost_usd=None,
        finish_reason="stop",
        duration_s=0.01,
    )

    def call() -> tuple[LeafCallOutput, list[str]]:
        prep = models._leaf_prepare(leaf)
        assert not isinstance(prep, Step)  # a first call: nothing recorded yet
        with statements(engine) as seen:
            out = models._leaf_record(leaf, prep, result)
        return out, seen

    out, seen = ActivityEnvironment().run(call)
    return leaf, out, seen


def test_a_long_answer_is_stored_once_and_returned_as_that_blob(
    sessions: sessionmaker[Session], engine: Engine, tmp_path: Path
) -> None:
    answer = "urgent: " + "1234567890" * (INLINE_CHARS // 10 + 1)

    leaf, out, seen = _leaf(sessions, engine, tmp_path, answer)

    with sessions() as s:
        step = find_step(s, leaf.node_id, 0, StepKind.LEAF, 0)
        assert step is not None
        assert out.answer == Text(blob=step.output_ref)
        assert out.answer.blob is not None and get_text(s, out.answer.blob) == answer
    assert len([q for q in seen if q.startswith("INSERT INTO blobs ")]) == 1, seen


def test_a_short_answer_comes_back_inline(
    sessions: sessionmaker[Session], engine: Engine, tmp_path: Path
) -> None:
    _leaf_input, out, _seen = _leaf(sessions, engine, tmp_path, "42")

    assert out.answer == Text(inline="42")


def test_a_run_without_a_session_settles_without_touching_sessions(
    sessions: sessionmaker[Session], engine: Engine, tmp_path: Path
) -> None:
    leaf, out, seen = _leaf(sessions, engine, tmp_path, "42")

    assert [q for q in seen if q.startswith("UPDATE sessions ")] == []
    with sessions() as s:
        run = get_run(s, leaf.run.run_id)
        sums = ledger_sums(s, run_id=leaf.run.run_id)
        assert (run.spent, run.reserved) == (sums.spent, sums.reserved)
        assert run.reserved == 0 and run.spent == Decimal(out.cost_usd) > 0
