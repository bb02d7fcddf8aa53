"""A cell waiting on its sub-calls holds no worker thread: one worker, with its default options,
completes a tree in which more than 200 cells wait on their sub-calls at the same moment (it has 64
threads for cells).

The root fans out ``rlm_query_batched`` children; each child's one cell calls ``llm_query`` on a leaf
model served by a local OpenAI-compatible endpoint (litellm's real provider path). The endpoint holds
every request until ``target`` of them are in flight at once, so the run only finishes quickly if that
many cells wait together; it counts the peak itself. Sandboxes use the process backend: a hundred and
more containers at once would measure the Docker engine on a 2-core machine, not the worker.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrator.settings import Settings
from orchestrator.vocabulary import LeafMode, Status
from orchestrator.worker import WorkerOptions, running_worker
from orchestrator.workflows.types import Limits
from tests.orchestrator.harness import Harness
from tests.orchestrator.workers import OPENAI_MODEL, leaf_reply

# Each child's cell: one leaf call counting the x's after the instruction line (``\\n`` is the escape
# the child's cell turns into a newline; the child's query is its prompt's first line, the whole prompt).
ROOT_CODE = r"""
prompts = [
    "FINAL(llm_query('Count the matches of the regex /x/ in the text after this line. "
    "Reply with the number only.\\n" + "x" * (i % 5 + 1) + "'))"
    for i in range({children})
]
answers = rlm_query_batched(prompts, model="scripted/code")
FINAL(str(sum(int(a) for a in answers)))
"""
# Requests are held until the target is in flight, or until none has arrived for this long: a design
# that stops short of the target then fails on the peak at once, while a loaded machine that is slow
# to start the cells (the arrivals keep coming) still gets there.
IDLE_S = 20.0


@dataclass
class Gate:
    target: int
    in_flight: int = 0
    peak: int = 0
    requests: int = 0
    opened: bool = False
    last_arrival: float = 0.0

    def wait_until_open(self, cond: threading.Condition) -> None:
        """Called holding ``cond``: returns once the gate opens, opening it after ``IDLE_S`` idle."""
        while not self.opened:
            idle = time.monotonic() - self.last_arrival
            if idle >= IDLE_S:
                self.opened = True
                cond.notify_all()
                return
            cond.wait(IDLE_S - idle)


def _completion(body: dict[str, Any]) -> bytes:
    _, reply = leaf_reply(body)
    return json.dumps(reply).encode()


@contextmanager
def gated_endpoint(target: int) -> Iterator[tuple[str, Gate]]:
    """A ``/v1`` base URL answering leaf prompts once ``target`` requests are in flight together."""
    gate = Gate(target)
    cond = threading.Condition()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
            with cond:
                gate.requests += 1
                gate.in_flight += 1
                gate.last_arrival = time.monotonic()
                gate.peak = max(gate.peak, gate.in_flight)
                if gate.in_flight >= gate.target:
                    gate.opened = True
                    cond.notify_all()
                gate.wait_until_open(cond)
                gate.in_flight -= 1
            payload = _completion(body)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 512  # the whole fan-out connects at once
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", gate
    finally:
        with cond:
            gate.opened = True
            cond.notify_all()
        server.shutdown()
        server.server_close()
        thread.join()


async def _fan_out(
    harness: Harness,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    children: int,
    target: int,
    options: WorkerOptions,
) -> None:
    context = tmp_path / "c.txt"
    context.write_text("unused: the root's cell is its query")
    with gated_endpoint(target) as (url, gate):
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_API_BASE", url)
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        async with running_worker(harness.client, settings, options):
            out = await harness.run(
                ROOT_CODE.format(children=children),
                context,
                model="scripted/code",
                sub_model=OPENAI_MODEL,
                limits=Limits(
                    max_concurrency=children + 10,
                    max_subcalls=children + 10,
                    leaf_mode=LeafMode.WORKFLOW,
                    heartbeat_timeout_s=30,
                ),
                task_queue=settings.task_queue,
                deadline_s=600,
            )
    assert out.result.status == Status.COMPLETED, out.result.error
    assert out.result.answer is not None
    assert out.result.answer.inline == str(sum(i % 5 + 1 for i in range(children)))
    assert gate.requests == children
    # Each leaf request in flight is one child's cell waiting on its llm_query (and the root waits too).
    assert gate.peak >= target, f"at most {gate.peak} cells waited at once; {target} needed"


async def test_one_worker_completes_a_tree_with_over_200_cells_waiting_at_once(
    harness: Harness, other_queue: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker's defaults: 64 threads for cells, so a design that held a thread per waiting cell
    # would stop at 64 waiting.
    await _fan_out(
        harness,
        replace(other_queue, sandbox_backend="process"),
        tmp_path,
        monkeypatch,
        children=220,
        target=201,
        # The cells wait on 200 leaves at once: the per-model cap on model calls is not what is tested.
        options=WorkerOptions(model_concurrency=0),
    )
