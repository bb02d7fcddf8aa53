"""The per-worker cap on concurrent calls of one model (``RLM_MODEL_CONCURRENCY`` /
``WorkerOptions.model_concurrency``): a wide fan-out queues on the worker, and the provider never sees
more than the cap in flight. The provider is a local OpenAI-compatible endpoint (litellm's real provider
path) that holds each request a moment and counts how many it holds at once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestrator.settings import Settings, SettingsError, load_settings
from orchestrator.vocabulary import LeafMode, Status
from orchestrator.worker import WorkerOptions, running_worker
from orchestrator.workflows.types import Limits
from tests.orchestrator.harness import Harness, word_context
from tests.orchestrator.workers import OPENAI_MODEL, leaf_reply

LEAVES = 8
CAP = 2
# Long enough that, without the cap, the leaves' requests overlap (they start within milliseconds).
HOLD_S = 0.4


@dataclass
class Counter:
    in_flight: int = 0
    peak: int = 0
    requests: int = 0


@contextmanager
def counting_endpoint() -> Iterator[tuple[str, Counter]]:
    counter = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
            with lock:
                counter.requests += 1
                counter.in_flight += 1
                counter.peak = max(counter.peak, counter.in_flight)
            time.sleep(HOLD_S)
            with lock:
                counter.in_flight -= 1
            payload = json.dumps(leaf_reply(body)[1]).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", counter
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("leaf_mode", [LeafMode.WORKFLOW, LeafMode.INLINE])
async def test_a_fan_out_never_has_more_model_calls_in_flight_than_the_cap(
    harness: Harness,
    other_queue: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    leaf_mode: LeafMode,
) -> None:
    settings = replace(other_queue, sandbox_backend="process")
    context, errors = word_context(tmp_path / "words.txt", 4000)
    with counting_endpoint() as (url, counter):
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_API_BASE", url)
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        async with running_worker(harness.client, settings, WorkerOptions(model_concurrency=CAP)):
            out = await harness.run(
                f"How many times does the word 'ERROR' appear? Use {LEAVES} chunks.",
                context,
                model="scripted/mapreduce",
                sub_model=OPENAI_MODEL,
                # The node would run all its leaves at once: only the worker's cap holds them back.
                limits=Limits(max_concurrency=LEAVES, leaf_mode=leaf_mode, heartbeat_timeout_s=30),
                task_queue=settings.task_queue,
            )
    assert out.result.status == Status.COMPLETED, out.result.error
    assert out.summary.answer == str(errors)
    assert counter.requests == LEAVES
    assert counter.peak <= CAP, f"{counter.peak} calls of {OPENAI_MODEL} in flight at once; the cap is {CAP}"
    assert counter.peak == CAP  # the leaves did run side by side, up to the cap


def test_the_cap_is_read_from_the_environment() -> None:
    assert load_settings({"RLM_MODEL_CONCURRENCY": "8"}).model_concurrency == 8
    assert load_settings({"RLM_MODEL_CONCURRENCY": "0"}).model_concurrency == 0  # no limit
    assert (
        load_settings({}).model_concurrency == load_settings({"RLM_MODEL_CONCURRENCY": ""}).model_concurrency
    )
    for bad in ("-1", "two", "1.5"):
        with pytest.raises(SettingsError, match="RLM_MODEL_CONCURRENCY"):
            load_settings({"RLM_MODEL_CONCURRENCY": bad})
