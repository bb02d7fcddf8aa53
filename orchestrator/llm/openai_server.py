"""The scripted model over HTTP: a small OpenAI-compatible server (``POST /v1/chat/completions``).

Any OpenAI client can then call the scripted model with no provider key and no network: durable-rlm
itself (``RLM_MODEL=openai/search`` with ``OPENAI_API_BASE`` at this server), the reference
implementation in ``ops/bench/bench_reference.py``, or a user's own set-up under test.

The request's model names the policy as ``scripted/<policy>?...`` does in-process (``search``,
``mapreduce?chunks=20``, ``leaf?latency_ms=200``; a ``scripted/`` prefix is accepted); a model that
names no policy gets the server's default policy, or 404 when it has none. Replies follow the
conversation they answer: durable-rlm's RLM prompts, the reference implementation's
(``orchestrator.llm.reference_dialect``), or plain prompts, answered as leaves. Every reply carries
``usage`` counted as the in-process scripted model counts it. ``fail_<kind>`` policies answer with
the HTTP error a provider would send (401, 429 with ``retry-after``, 500, 408, 404, 400, or a closed
connection), so a client's error handling can be tried too.

One thread per connection: concurrent sub-calls are served concurrently, each sleeping its latency.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from orchestrator.llm import SCRIPTED_PROVIDER as PROVIDER
from orchestrator.llm.policies import reply
from orchestrator.llm.reference_dialect import is_reference, reference_reply
from orchestrator.llm.scripted_model import (
    POLICIES,
    ScriptedModelError,
    ScriptedParams,
    count_tokens,
    estimate_prompt_tokens,
    parse_model,
)
from orchestrator.protocol.prompts import ChatMessage, Role

log = structlog.get_logger("orchestrator.llm.openai_server")

# (HTTP status, error type, error code, message) per failure kind of the ``fail_*`` and ``flaky``
# policies, worded as providers word them: clients (litellm among them) sort errors by these words.
_FAILURES: Mapping[str, tuple[int, str, str, str]] = {
    "auth": (401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided"),
    "ratelimit": (429, "rate_limit_error", "rate_limit_exceeded", "Rate limit reached, slow down"),
    "server": (500, "server_error", "internal_error", "The server had an error"),
    "timeout": (408, "timeout_error", "request_timeout", "Request timed out"),
    "notfound": (404, "not_found_error", "model_not_found", "The model does not exist"),
    "badrequest": (400, "invalid_request_error", "invalid_request", "Invalid request"),
    "context": (
        400,
        "invalid_request_error",
        "context_length_exceeded",
        "This model's maximum context length is {window} tokens; the messages have {tokens}",
    ),
}
_POLICY_NAMES = ", ".join(p for p in POLICIES if not p.startswith("fail_")) + ", fail_<kind>"


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port
    # Latency of every reply whose model string does not set its own ``latency_ms``.
    latency_ms: float = 0.0
    # Policy for model names that name none (e.g. ``gpt-4o`` from an unchanged client); None: 404.
    policy: str | None = None


class ServeError(Exception):
    """A request the server refuses: the HTTP status and an OpenAI-style error body."""

    def __init__(
        self, status: int, message: str, kind: str = "invalid_request_error", code: str = ""
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.code = status, kind, code
        self.headers: dict[str, str] = {}


class _CloseConnection(Exception):
    """The ``connection`` failure: drop the connection without a reply."""


def _role(raw: object) -> Role:
    if raw in ("system", "developer"):
        return "system"
    return "assistant" if raw == "assistant" else "user"


def _text(content: object) -> str:
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def chat_messages(raw: object) -> tuple[ChatMessage, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(m, dict) for m in raw):
        raise ServeError(400, "messages must be a non-empty list of {role, content} objects")
    return tuple(ChatMessage(_role(m.get("role")), _text(m.get("content"))) for m in raw)


class ScriptedServer:
    """The server; ``with ScriptedServer(config) as server:`` serves on a thread until the block ends."""

    def __init__(self, config: ServerConfig = ServerConfig()) -> None:
        if config.policy is not None and config.policy not in POLICIES:
            raise ValueError(f"unknown policy {config.policy!r}; use one of {', '.join(POLICIES)}")
        self.config = config
        # Chat-completion requests that named a model and messages (answered or failed on purpose).
        self.requests = 0
        # TCP connections accepted: what a provider sees of a client's connection reuse.
        self.connections = 0
        self._lock = threading.Lock()
        self._flaky: dict[str, int] = {}
        self._httpd = _HTTPServer((config.host, config.port), _Handler)
        self._httpd.scripted = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to give as ``OPENAI_API_BASE`` (ends in ``/v1``)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def start(self) -> ScriptedServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="scripted-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop a server started with ``start``."""
        self._httpd.shutdown()
        self.close()
        if self._thread is not None:
            self._thread.join()

    def close(self) -> None:
        """Release the port (after ``serve_forever`` returned)."""
        self._httpd.server_close()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ one request

    def _model(self, requested: object) -> tuple[str, ScriptedParams]:
        if not isinstance(requested, str) or not requested:
            raise ServeError(400, "model must be a non-empty string naming a scripted policy, e.g. 'search'")
        name = requested.removeprefix(f"{PROVIDER}/")
        policy, _, query = name.partition("?")
        if policy not in POLICIES:
            if self.config.policy is None:
                raise ServeError(
                    404,
                    f"model {requested!r} names no scripted policy; use one of {_POLICY_NAMES} "
                    "(or start the server with a default policy)",
                    "not_found_error",
                    "model_not_found",
                )
            name = f"{self.config.policy}?{query}" if query else self.config.policy
        try:
            return name, parse_model(name)
        except ScriptedModelError as exc:
            raise ServeError(400, str(exc)) from None

    def _flaky_fails(self, name: str, messages: Sequence[ChatMessage], times: int) -> bool:
        digest = hashlib.sha256(name.encode())
        for m in messages:
            digest.update(f"\0{m.role}\0{m.content}".encode())
        key = digest.hexdigest()
        with self._lock:
            seen = self._flaky.get(key, 0)
            self._flaky[key] = seen + 1
        return seen < times

    def _failure(self, name: str, params: ScriptedParams, messages: Sequence[ChatMessage]) -> str | None:
        policy = name.partition("?")[0]
        if policy.startswith("fail_"):
            return params.fail
        if policy == "flaky" and self._flaky_fails(name, messages, params.times):
            return params.fail
        return None

    def complete(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The response body for one chat-completion request body; raises ServeError."""
        if body.get("stream"):
            raise ServeError(400, "streaming is not supported by the scripted server; send stream=false")
        name, params = self._model(body.get("model"))
        messages = chat_messages(body.get("messages"))
        with self._lock:
            self.requests += 1
        latency_ms = params.latency_ms if "latency_ms" in params.raw else self.config.latency_ms
        prompt_tokens = estimate_prompt_tokens(name, messages)
        if prompt_tokens > params.context_window:
            kind = "context"
        else:
            kind = self._failure(name, params, messages) or ""
        if latency_ms:
            time.sleep(latency_ms / 1000)
        if kind == "connection":
            raise _CloseConnection
        if kind:
            status, error_type, code, message = _FAILURES[kind]
            message = message.format(window=params.context_window, tokens=prompt_tokens)
            error = ServeError(status, f"{message} (scripted {kind} failure)", error_type, code)
            if kind == "ratelimit":
                error.headers["retry-after"] = f"{params.retry_after_s:g}"
            raise error
        if is_reference(messages):
            text = reference_reply(params.policy, messages)
        else:
            text = reply(params.policy, messages)
        completion_tokens = count_tokens(text, params.chars_per_token)
        finish = "stop"
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        if isinstance(max_tokens, int) and completion_tokens > max_tokens:
            # A real model stops mid-reply at max_tokens; so does this one.
            text = text[: int(max_tokens * params.chars_per_token)]
            completion_tokens, finish = max_tokens, "length"
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": p, "object": "model", "owned_by": PROVIDER} for p in POLICIES],
        }


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Wide fan-outs open many connections at once; the default backlog of 5 would refuse some.
    request_queue_size = 256
    scripted: ScriptedServer

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.scripted._lock:
            self.scripted.connections += 1
        super().process_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, so a client's connection pool is reused across sub-calls.
    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two writes: with Nagle's algorithm the body waits for the
    # client's delayed ACK of the headers, 40 ms per reply on Linux, which no real provider adds.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def _send(self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, error: ServeError) -> None:
        body = {"error": {"message": str(error), "type": error.kind, "code": error.code or None}}
        self._send(error.status, body, error.headers)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, self.server.scripted.models())
        else:
            self._error(
                ServeError(404, f"no such path {self.path}; POST /v1/chat/completions", code="not_found")
            )

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._error(
                ServeError(404, f"no such path {self.path}; POST /v1/chat/completions", code="not_found")
            )
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ServeError(400, "the request body must be a JSON object")
            self._send(200, self.server.scripted.complete(body))
        except json.JSONDecodeError as exc:
            self._error(ServeError(400, f"the request body is not JSON: {exc}"))
        except ServeError as exc:
            log.info("scripted_server_refused", status=exc.status, message=str(exc))
            self._error(exc)
        except _CloseConnection:
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        # http.server writes one line per request to stderr; the CLI logs what matters instead.
        pass
