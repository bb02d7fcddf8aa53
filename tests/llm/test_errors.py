"""Error classification, with litellm's real exception classes raised from scripted policies."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest
from litellm import exceptions as errors

from orchestrator.llm.complete import (
    CompletionRequest,
    ModelCallError,
    classify,
    complete,
    prepare_model,
    retry_after_seconds,
)
from orchestrator.protocol.prompts import leaf_messages

PROMPT = leaf_messages("Count the matches of the regex /a/ in the text after this line.\nbanana")


async def failure(model: str, **request: float) -> ModelCallError:
    with pytest.raises(ModelCallError) as caught:
        await complete(CompletionRequest(model=model, messages=PROMPT, **request))  # type: ignore[arg-type]
    return caught.value


@pytest.mark.parametrize(
    ("policy", "kind", "retryable", "cause"),
    [
        ("fail_auth", "auth", False, errors.AuthenticationError),
        ("fail_badrequest", "bad_request", False, errors.BadRequestError),
        ("fail_notfound", "not_found", False, errors.NotFoundError),
        ("fail_context", "context_window", False, errors.ContextWindowExceededError),
        ("fail_ratelimit", "rate_limit", True, errors.RateLimitError),
        ("fail_server", "server", True, errors.InternalServerError),
        ("fail_timeout", "timeout", True, errors.Timeout),
        ("fail_connection", "connection", True, errors.APIConnectionError),
    ],
)
async def test_scripted_failures_are_classified(policy: str, kind: str, retryable: bool, cause: type) -> None:
    error = await failure(f"scripted/{policy}")
    assert (error.kind, error.retryable) == (kind, retryable)
    assert isinstance(error.__cause__, cause)
    assert error.model == f"scripted/{policy}"
    assert "scripted" in error.message and "\n" not in error.message


async def test_rate_limit_honours_retry_after() -> None:
    error = await failure("scripted/fail_ratelimit?retry_after=7.5")
    assert error.retry_after_s == 7.5
    assert error.status_code == 429
    assert (await failure("scripted/fail_auth")).retry_after_s is None


async def test_a_slow_model_past_the_timeout_is_a_retryable_timeout() -> None:
    error = await failure("scripted/leaf?latency_ms=2000", timeout_s=0.2)
    assert (error.kind, error.retryable) == ("timeout", True)


async def test_a_prompt_over_the_context_window_is_final() -> None:
    error = await failure("scripted/leaf?context_window=10")
    assert (error.kind, error.retryable) == ("context_window", False)
    assert "exceeds the context window of 10" in error.message


async def test_flaky_fails_the_given_number_of_times_then_answers() -> None:
    model = "scripted/flaky?fail=server&times=2&then=leaf"
    assert (await failure(model)).kind == "server"
    assert (await failure(model)).kind == "server"
    result = await complete(CompletionRequest(model=model, messages=PROMPT))
    assert result.text == "3"


async def test_malformed_scripted_model_is_a_final_bad_request() -> None:
    error = await failure("scripted/leaf?latency_ms=soon")
    assert (error.kind, error.retryable) == ("bad_request", False)
    with pytest.raises(ModelCallError, match="unknown policy"):
        prepare_model("scripted/nosuch")


def test_bare_api_errors_are_classified_by_status() -> None:
    assert classify(errors.APIError(503, "busy", "p", "m"), "m").retryable
    assert classify(errors.APIError(429, "slow", "p", "m"), "m").retryable
    error = classify(errors.APIError(418, "teapot", "p", "m"), "m")
    assert (error.kind, error.retryable) == ("bad_request", False)
    assert classify(RuntimeError("???"), "m").kind == "unknown"
    assert not classify(RuntimeError("???"), "m").retryable


def test_retry_after_header_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"retry-after": "Thu, 01 Jan 2026 12:00:30 GMT"}, now) == 30.0
    assert retry_after_seconds({"retry-after": "whenever"}) is None
    assert retry_after_seconds({}) is None


def test_model_call_error_survives_pickling() -> None:
    error = ModelCallError(
        kind="rate_limit", retryable=True, message="slow", model="m", retry_after_s=2.0, status_code=429
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.kind, copy.retryable, copy.message, copy.model, copy.retry_after_s, copy.status_code) == (
        "rate_limit",
        True,
        "slow",
        "m",
        2.0,
        429,
    )
    assert str(copy) == "rate_limit from model 'm': slow"
