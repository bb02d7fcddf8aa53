"""Model errors: non-retryable ones end the node with a clear reason; retryable ones are retried."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import structlog
import structlog.testing

from orchestrator.store import list_steps
from orchestrator.workflows.types import root_id
from tests.orchestrator.harness import Harness


@pytest.fixture
def context(tmp_path: Path) -> Path:
    path = tmp_path / "c.txt"
    path.write_text("the magic number is 77")
    return path


async def test_unknown_model_price_fails_the_node_naming_the_fix(harness: Harness, context: Path) -> None:
    out = await harness.run("What is the magic number?", context, model="openai/durable-rlm-no-such-model")

    assert out.result.status == "failed"
    assert out.summary.status == "failed"
    reason = out.result.error or ""
    assert "no price known for model 'openai/durable-rlm-no-such-model'" in reason
    assert "rlm price set" in reason
    assert out.summary.cost == 0


async def test_a_sub_model_without_a_price_fails_the_run_before_its_first_call(
    harness: Harness, context: Path
) -> None:
    # Left to its first sub-call, it would fail the run only after the root model was paid for.
    out = await harness.run(
        "What is the magic number?",
        context,
        model="scripted/code",
        sub_model="openai/durable-rlm-no-such-sub-model",
    )

    assert out.result.status == "failed"
    reason = out.result.error or ""
    assert "the run's sub-model: no price known for model 'openai/durable-rlm-no-such-sub-model'" in reason
    assert "rlm price set" in reason
    assert out.summary.cost == 0
    with harness.sessions() as s:
        assert list_steps(s, root_id(out.run_id)) == []


NO_PRICE = "durable-rlm-no-such-price"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_an_expected_failure_is_one_event_without_a_traceback(harness: Harness, context: Path) -> None:
    # An unknown price is the user's to fix, and the run's reason says how: the worker's log gets one
    # ``activity.failed`` event for it, not Temporal's warning with a traceback.
    sdk = logging.getLogger("temporalio.activity")
    handler, level = _Records(), sdk.level
    sdk.addHandler(handler)
    sdk.setLevel(logging.DEBUG)
    try:
        with structlog.testing.capture_logs() as events:
            out = await harness.run(
                "What is the magic number?", context, model="openai/durable-rlm-no-such-price"
            )
    finally:
        sdk.removeHandler(handler)
        sdk.setLevel(level)

    assert out.result.status == "failed"
    # capture_logs keeps no bound context: the model in the message tells this run's failure apart.
    failed = [e for e in events if e["event"] == "activity.failed" and NO_PRICE in e["message"]]
    assert len(failed) == 1, failed
    assert failed[0]["log_level"] == "warning"
    assert failed[0]["type"] == "UnknownModelPrice" and failed[0]["retryable"] is False
    assert f"no price known for model 'openai/{NO_PRICE}'" in failed[0]["message"]
    root = root_id(out.run_id)
    mine = [r for r in handler.records if getattr(r, "temporal_activity", {}).get("workflow_id") == root]
    assert mine, "Temporal's SDK logged nothing for the failed activity"
    assert all(r.levelno == logging.DEBUG for r in mine), [(r.levelname, r.getMessage()) for r in mine]


async def test_scripted_auth_error_is_not_retried(harness: Harness, context: Path) -> None:
    out = await harness.run("What is the magic number?", context, model="scripted/fail_auth")

    assert out.result.status == "failed"
    assert "auth" in (out.result.error or "")
    assert out.summary.cost == 0


class _Unauthorized(BaseHTTPRequestHandler):
    calls = 0

    def do_POST(self) -> None:
        type(self).calls += 1
        body = json.dumps(
            {
                "error": {
                    "message": "Incorrect API key provided: sk-bad.",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            }
        ).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def openai_with_bad_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Unauthorized]]:
    """A local endpoint that answers like a provider refusing the key; litellm's real OpenAI path."""
    server = HTTPServer(("127.0.0.1", 0), _Unauthorized)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-bad")
    monkeypatch.setenv("OPENAI_API_BASE", f"http://127.0.0.1:{server.server_port}/v1")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_port}/v1")
    _Unauthorized.calls = 0
    yield _Unauthorized
    server.shutdown()


async def test_bad_api_key_on_a_real_provider_path_fails_with_a_clear_message(
    harness: Harness, context: Path, openai_with_bad_key: type[_Unauthorized]
) -> None:
    out = await harness.run("What is the magic number?", context, model="openai/gpt-4o-mini")

    assert out.result.status == "failed"
    reason = out.result.error or ""
    assert "auth" in reason and "Incorrect API key" in reason
    assert openai_with_bad_key.calls == 1  # non-retryable: asked once
    assert out.summary.cost == 0


async def test_rate_limits_are_retried_by_temporal(harness: Harness, context: Path) -> None:
    out = await harness.run(
        "What is the magic number?",
        context,
        model="scripted/flaky?fail=ratelimit&times=2&retry_after=0.2&then=search",
    )

    assert out.result.status == "completed", out.result.error
    assert out.summary.answer == "77"
    with harness.sessions() as s:
        generated = [st for st in list_steps(s, root_id(out.run_id)) if st.kind == "generate"]
    assert len(generated) == 1
