"""A local OpenAI-compatible endpoint that refuses every key: answers each POST .../chat/completions
with 401 and an OpenAI-style error body, and counts the requests it saw."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

OPENAI_BASE_VARIABLES = ("OPENAI_API_BASE", "OPENAI_BASE_URL")
BODY = {
    "error": {
        "message": "Incorrect API key provided: sk-rej***ted.",
        "type": "invalid_request_error",
        "code": "invalid_api_key",
    }
}


@dataclass
class Endpoint:
    url: str
    paths: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.paths)


@contextmanager
def unauthorized_endpoint() -> Iterator[Endpoint]:
    endpoint = Endpoint("")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            with lock:
                endpoint.paths.append(self.path)
            payload = json.dumps(BODY).encode()
            self.send_response(401)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def point_openai_at(monkeypatch: pytest.MonkeyPatch, endpoint: Endpoint, key: str | None) -> None:
    """litellm's OpenAI provider reads its base URL and key from the environment at each call."""
    for name in OPENAI_BASE_VARIABLES:
        monkeypatch.setenv(name, endpoint.url)
    for name in [n for n in os.environ if n.startswith("OPENAI_") and n.endswith(("_KEY", "_TOKEN"))]:
        monkeypatch.delenv(name)
    if key is not None:
        monkeypatch.setenv("OPENAI_API_KEY", key)
