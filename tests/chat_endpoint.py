"""A local OpenAI-compatible chat endpoint for tests that need litellm's real provider path: each
``POST …/chat/completions`` is answered by a function of the request body; the requests are counted."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (HTTP status, JSON body) for one request body.
Reply = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


@dataclass
class ChatEndpoint:
    url: str  # the ``/v1`` base URL to give as OPENAI_API_BASE
    paths: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.paths)


@contextmanager
def chat_endpoint(reply: Reply) -> Iterator[ChatEndpoint]:
    endpoint = ChatEndpoint("")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
            with lock:
                endpoint.paths.append(self.path)
            status, answer = reply(body)
            payload = json.dumps(answer).encode()
            self.send_response(status)
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
