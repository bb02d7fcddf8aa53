"""A rate-limited model call is retried by Temporal after the provider's ``retry-after``, not after the
retry policy's own interval (1 s)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from orchestrator.activities.metering import model_error
from orchestrator.llm.complete import ModelCallError
from orchestrator.vocabulary import Status
from tests.orchestrator.harness import Harness, word_context

RETRY_AFTER_S = 4.0


def test_a_rate_limit_error_asks_temporal_to_wait_for_retry_after() -> None:
    error = model_error(
        ModelCallError(kind="rate_limit", retryable=True, message="slow down", model="m", retry_after_s=2.5)
    )
    assert not error.non_retryable
    assert error.next_retry_delay == timedelta(seconds=2.5)


async def test_the_retry_of_a_rate_limited_call_waits_for_retry_after(
    harness: Harness, tmp_path: Path
) -> None:
    context, _ = word_context(tmp_path / "words.txt", 200, needle="The magic number is 77.")
    started = time.monotonic()
    out = await harness.run(
        "What is the magic number?",
        context,
        model=f"scripted/flaky?fail=ratelimit&times=1&retry_after={RETRY_AFTER_S:g}&then=search",
    )
    elapsed = time.monotonic() - started
    assert out.result.status == Status.COMPLETED, out.result.error
    assert out.summary.answer == "77"
    # A lower bound, not a speed check: retried after the policy's 1 s, the run would end well before.
    assert elapsed >= RETRY_AFTER_S
