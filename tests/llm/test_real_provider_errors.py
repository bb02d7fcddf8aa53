"""litellm's OpenAI provider against a local HTTP endpoint: real HTTP responses, real exception mapping.

The endpoint stands in for a provider (only the model may be a stand-in); everything between
``complete()`` and the socket is litellm's and the OpenAI SDK's real code.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orchestrator.llm.complete import CompletionRequest, ModelCallError, complete
from orchestrator.protocol.prompts import ChatMessage

MESSAGES = (ChatMessage("user", "Say hi."),)

# path -> (status, headers, body)
RESPONSES: dict[str, tuple[int, dict[str, str], dict[str, object]]] = {
    "ok": (
        200,
        {},
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
        },
    ),
    "badkey": (
        401,
        {},
        {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}},
    ),
    "ratelimit": (
        429,
        {"retry-after": "4"},
        {"error": {"message": "Rate limit reached", "type": "requests"}},
    ),
    "overloaded": (503, {}, {"error": {"message": "The server is overloaded", "type": "server_error"}}),
    "toolong": (
        400,
        {},
        {
            "error": {
                "message": "This model's maximum context length is 128000 tokens. However, your messages "
                "resulted in 200000 tokens.",
                "type": "invalid_request_error",
                "code": "context_length_exceeded",
            }
        },
    ),
}


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        status, headers, body = RESPONSES[self.path.strip("/").split("/")[0]]
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def request(api_base: str) -> CompletionRequest:
    return CompletionRequest(
        model="openai/gpt-4o-mini",
        messages=MESSAGES,
        max_tokens=16,
        api_base=api_base,
        api_key="sk-test",
        timeout_s=10,
    )


async def test_success_returns_text_usage_and_litellm_cost(endpoint: str) -> None:
    result = await complete(request(f"{endpoint}/ok/v1"))
    assert (result.text, result.prompt_tokens, result.completion_tokens) == ("hi", 9, 1)
    assert result.reported_cost_usd is not None and result.reported_cost_usd > 0


@pytest.mark.parametrize(
    ("path", "kind", "retryable", "retry_after"),
    [
        ("badkey", "auth", False, None),
        ("ratelimit", "rate_limit", True, 4.0),
        ("overloaded", "server", True, None),
        ("toolong", "context_window", False, None),
    ],
)
async def test_http_failures_are_classified(
    endpoint: str, path: str, kind: str, retryable: bool, retry_after: float | None
) -> None:
    with pytest.raises(ModelCallError) as caught:
        await complete(request(f"{endpoint}/{path}/v1"))
    error = caught.value
    assert (error.kind, error.retryable, error.retry_after_s) == (kind, retryable, retry_after)
    assert error.model == "openai/gpt-4o-mini"


async def test_nothing_listening_is_a_retryable_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ModelCallError) as caught:
        await complete(request(f"http://127.0.0.1:{port}/v1"))
    # litellm's OpenAI path reports a refused connection as InternalServerError("Connection error."):
    # retried either way, which is what matters.
    assert caught.value.retryable
    assert caught.value.kind in ("connection", "server")
    assert "Connection error" in caught.value.message
