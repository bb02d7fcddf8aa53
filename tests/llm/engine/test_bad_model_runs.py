"""A model string the worker cannot use ends the node at once instead of being retried to the deadline:
the ``generate`` activity's own preparation (before any call) fails as a final model error."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from orchestrator.runs import RunError, RunInput, RunRequest, checked_input, start_run
from orchestrator.store.models import ModelPriceRow
from orchestrator.workflows.types import Limits
from tests.llm.engine.conftest import root_attempts
from tests.orchestrator.harness import Harness


async def test_a_malformed_scripted_model_fails_at_once(harness: Harness, tmp_path: Path) -> None:
    context = tmp_path / "c.txt"
    context.write_text("the magic number is 77")
    req = RunRequest(
        "What is the magic number?",
        context,
        model="scripted/search?latency_ms=soon",
        deadline_s=60.0,
        run_id=f"t-{uuid.uuid4().hex[:10]}",
    )
    with pytest.raises(RunError, match="latency_ms='soon' is not a number"):
        checked_input(req)  # refused where a run is asked for

    # A run whose input was checked elsewhere (code that builds its RunInput) reaches the worker anyway.
    trusted = RunInput(req, context.read_bytes(), ".txt")
    out = await harness.finish(
        await start_run(harness.client, harness.sessions, trusted, harness.settings.task_queue)
    )

    assert (out.result.status, out.summary.status) == ("failed", "failed")
    assert "model call failed (bad_request)" in (out.result.error or "")
    assert "latency_ms" in (out.result.error or "")
    assert out.summary.cost == 0
    assert await root_attempts(harness, out.run_id) == [1]  # the one generate, never retried


async def test_a_call_too_dear_to_reserve_fails_at_once(harness: Harness, tmp_path: Path) -> None:
    # A worst case no ledger can hold (a trillion USD a token overflows its nanodollar totals) used to
    # be retried every minute until the deadline, the run shown running all the while. `rlm price set`
    # refuses such a price now; this one reaches the store another way.
    context = tmp_path / "c.txt"
    context.write_text("the magic number is 77")
    model = "scripted/search?latency_ms=1"
    with harness.sessions.begin() as s:
        s.add(ModelPriceRow(model=model, input_per_token=Decimal(10**12), output_per_token=Decimal(1)))

    out = await harness.run("What is the magic number?", context, model=model, deadline_s=60.0)

    assert (out.result.status, out.summary.status) == ("failed", "failed")
    assert "the call's worst case cannot be reserved" in (out.result.error or ""), out.result.error
    assert f"`rlm price show {model}`" in (out.result.error or "")
    assert out.summary.cost == 0 and out.summary.reserved == 0
    assert await root_attempts(harness, out.run_id) == [1]


def test_a_run_asking_for_absurd_limits_is_refused_before_it_starts(tmp_path: Path) -> None:
    context = tmp_path / "c.txt"
    context.write_text("x")
    for limits, option in (
        (Limits(max_depth=10**20), "--max-depth"),
        (Limits(max_iterations=10**20), "--max-iterations"),
        (Limits(max_subcalls=10**20), "--max-subcalls"),
        (Limits(max_tokens=10**20), "--max-tokens"),
        (Limits(max_concurrency=10**8), "--concurrency"),
        (Limits(context_window=10**20), "--context-window"),
    ):
        with pytest.raises(RunError, match=f"^{option} [0-9]+ is out of range; give at most "):
            checked_input(RunRequest(query="q", context_path=(context,), limits=limits))
    # The widest fan-out a node may keep in flight stays under the server's pending-children limit.
    checked_input(RunRequest(query="q", context_path=(context,), limits=Limits(max_concurrency=1000)))
    with pytest.raises(RunError, match=r"^--concurrency 1001 is out of range; give at most 1000$"):
        checked_input(RunRequest(query="q", context_path=(context,), limits=Limits(max_concurrency=1001)))
    # The deepest node's id (a 128-character run id, "/0", ".500" per level) fits Temporal's 1,000.
    checked_input(RunRequest(query="q", context_path=(context,), limits=Limits(max_depth=216)))
    with pytest.raises(RunError) as deep:
        checked_input(RunRequest(query="q", context_path=(context,), limits=Limits(max_depth=217)))
    assert str(deep.value) == (
        "--max-depth 217 with --max-subcalls 500 makes node ids of up to 1,002 characters, and Temporal "
        "takes workflow ids of at most 1,000; give --max-depth at most 216"
    )
