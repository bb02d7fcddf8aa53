"""A model string the worker cannot use ends the node at once instead of being retried to the deadline:
the ``generate`` activity's own preparation (before any call) fails as a final model error."""

from __future__ import annotations

from pathlib import Path

from tests.llm.engine.conftest import root_attempts
from tests.orchestrator.harness import Harness


async def test_a_malformed_scripted_model_fails_at_once(harness: Harness, tmp_path: Path) -> None:
    context = tmp_path / "c.txt"
    context.write_text("the magic number is 77")

    out = await harness.run(
        "What is the magic number?", context, model="scripted/search?latency_ms=soon", deadline_s=60.0
    )

    assert (out.result.status, out.summary.status) == ("failed", "failed")
    assert "model call failed (bad_request)" in (out.result.error or "")
    assert "latency_ms" in (out.result.error or "")
    assert out.summary.cost == 0
    assert await root_attempts(harness, out.run_id) == [1]  # the one generate, never retried
