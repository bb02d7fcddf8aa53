"""The side-by-side benchmark's smoke test, durable-rlm's side only: its 2,000-record count task
(ops/bench/bench_reference.py writes it) run through the whole engine (dev server, worker, Docker
sandbox, PostgreSQL store) against the scripted model served over HTTP, through litellm's real OpenAI
provider, at 0 ms latency. The reference implementation is not installed here; the full benchmark
is not part of the suite."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

from orchestrator.llm.openai_server import ScriptedServer, ServerConfig
from orchestrator.store import set_price
from orchestrator.vocabulary import Status
from orchestrator.workflows.types import Limits
from tests.orchestrator.harness import Harness

BENCH = Path(__file__).resolve().parents[3] / "ops" / "bench" / "bench_reference.py"


def bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_reference", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    # It imports its sibling modules as a script run from its directory does.
    sys.path.insert(0, str(BENCH.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH.parent))
    return module


@pytest.fixture
def server(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedServer]:
    with ScriptedServer(ServerConfig()) as served:
        # litellm's OpenAI provider reads these at each call, in the test's in-process worker too.
        monkeypatch.setenv("OPENAI_API_BASE", served.url)
        monkeypatch.setenv("OPENAI_API_KEY", "any")
        yield served


async def test_the_benchmarks_count_task_through_the_served_model(
    harness: Harness, server: ScriptedServer, tmp_path: Path
) -> None:
    bench = bench_module()
    task = next(t for t in bench.TASKS if t.name == "count_2k")
    context, expected = bench.write_task(task, tmp_path)
    model = f"openai/{bench.model_name(task, 0)}"
    with harness.sessions.begin() as session:
        set_price(session, model, bench.PRICE_IN, bench.PRICE_OUT)

    out = await harness.run(
        task.query(), context, model=model, sub_model=model, limits=Limits(heartbeat_timeout_s=10)
    )

    assert out.result.status == Status.COMPLETED, out.result.error
    assert out.result.answer is not None and out.result.answer.inline == expected
    assert int(expected) > 0
    assert server.requests == 1 + task.chunks  # the root's one turn, then one call per chunk
    assert out.summary.cost > Decimal(0)  # priced from the usage the server reported
