"""The model-call process: a real child process making the calls through litellm, as a long-lived
worker does. Same answers and errors as a call made here; cancels reach the child; a dead child fails
its calls retryably and the next call gets a new one; close() leaves nothing running."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

import pytest
import structlog

from orchestrator.llm.call_process import ModelCallProcess
from orchestrator.llm.complete import CompletionRequest, ModelCallError, complete
from orchestrator.protocol.prompts import leaf_messages
from tests.orchestrator.workers import process_gone

PROMPT = "Count the matches of the regex /cat/ in the text after this line.\na cat, a dog, a cat"
SLOW = "scripted/leaf?latency_ms=30000"


def request(model: str = "scripted/leaf", prompt: str = PROMPT) -> CompletionRequest:
    return CompletionRequest(model=model, messages=leaf_messages(prompt), max_tokens=100, timeout_s=60)


@contextlib.asynccontextmanager
async def started_here() -> AsyncIterator[ModelCallProcess]:
    """A child started now: it writes to the standard error this moment's capture has."""
    host = ModelCallProcess()
    await host.start()
    try:
        yield host
    finally:
        await host.close()


@pytest.fixture
async def calls() -> AsyncIterator[ModelCallProcess]:
    async with started_here() as host:
        yield host


async def test_a_call_there_answers_as_a_call_here(calls: ModelCallProcess) -> None:
    there = await calls.complete(request())
    here = await complete(request())

    assert calls.pid is not None and calls.pid != os.getpid()
    assert there.text == here.text == "2"
    assert (there.prompt_tokens, there.completion_tokens) == (here.prompt_tokens, here.completion_tokens)
    assert there.reported_cost_usd == here.reported_cost_usd is not None


async def test_calls_run_side_by_side_in_the_child(calls: ModelCallProcess) -> None:
    await calls.complete(request())  # the child's imports are done
    started = time.monotonic()
    results = await asyncio.gather(
        *(calls.complete(request("scripted/leaf?latency_ms=500")) for _ in range(20))
    )
    elapsed = time.monotonic() - started

    assert [r.text for r in results] == ["2"] * 20
    assert elapsed < 5.0, f"20 calls of 0.5 s took {elapsed:.1f} s: they did not overlap"


async def test_a_failed_call_raises_the_same_error_with_its_retry_after(calls: ModelCallProcess) -> None:
    with pytest.raises(ModelCallError) as there:
        await calls.complete(request("scripted/fail_ratelimit?retry_after=7"))
    with pytest.raises(ModelCallError) as here:
        await complete(request("scripted/fail_ratelimit?retry_after=7"))

    assert (there.value.kind, there.value.retryable, there.value.retry_after_s) == ("rate_limit", True, 7.0)
    assert (there.value.kind, there.value.retryable, there.value.retry_after_s) == (
        here.value.kind,
        here.value.retryable,
        here.value.retry_after_s,
    )
    assert str(there.value) == str(here.value)


async def test_a_cancelled_call_is_cancelled_in_the_child(capfd: pytest.CaptureFixture[str]) -> None:
    async with started_here() as calls:
        await cancel_one(calls, capfd)


async def cancel_one(calls: ModelCallProcess, capfd: pytest.CaptureFixture[str]) -> None:
    await calls.complete(request())
    capfd.readouterr()
    structlog.contextvars.bind_contextvars(node_id="cancel-me")
    try:
        task = asyncio.create_task(calls.complete(request(SLOW)))
        await asyncio.sleep(0.5)
        task.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 1.0
    finally:
        structlog.contextvars.unbind_contextvars("node_id")

    deadline = time.monotonic() + 10
    while "model_calls.cancelled" not in (err := capfd.readouterr().err):
        assert time.monotonic() < deadline, "the child never cancelled the call"
        await asyncio.sleep(0.1)
    line = next(json.loads(x) for x in err.splitlines() if "model_calls.cancelled" in x)
    assert line["node_id"] == "cancel-me"
    assert (await calls.complete(request())).text == "2"  # the child serves on


async def test_the_child_logs_each_call_with_the_context_bound_for_it(
    capfd: pytest.CaptureFixture[str],
) -> None:
    structlog.contextvars.bind_contextvars(run_id="run-ctx", node_id="run-ctx/0.3")
    try:
        async with started_here() as calls:
            await calls.complete(request())
    finally:
        structlog.contextvars.unbind_contextvars("run_id", "node_id")

    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if '"llm.completed"' in x]
    assert lines and lines[-1]["run_id"] == "run-ctx" and lines[-1]["node_id"] == "run-ctx/0.3"
    assert lines[-1]["model"] == "scripted/leaf"


async def test_a_killed_child_fails_its_calls_retryably_and_the_next_call_gets_a_new_one(
    calls: ModelCallProcess,
) -> None:
    await calls.complete(request())
    first = calls.pid
    assert first is not None
    in_flight = asyncio.create_task(calls.complete(request(SLOW)))
    await asyncio.sleep(0.5)
    os.kill(first, signal.SIGKILL)

    with pytest.raises(ModelCallError) as err:
        await asyncio.wait_for(in_flight, 10)
    assert (err.value.kind, err.value.retryable, err.value.model) == ("process", True, SLOW)
    assert "exited (code -9" in err.value.message

    assert (await calls.complete(request())).text == "2"
    assert calls.pid not in (None, first)


async def test_close_stops_the_child_and_refuses_later_calls() -> None:
    host = ModelCallProcess()
    await host.complete(request())
    pid = host.pid
    assert pid is not None
    in_flight = asyncio.create_task(host.complete(request(SLOW)))
    await asyncio.sleep(0.3)

    started = time.monotonic()
    await host.close()

    assert time.monotonic() - started < 3.0
    assert process_gone(pid)
    assert host.pid is None
    with pytest.raises(ModelCallError, match="model-call process exited"):
        await in_flight
    with pytest.raises(RuntimeError, match="closed"):
        await host.complete(request())


async def test_the_child_ends_when_its_worker_dies() -> None:
    """The child's stdin closes with the last process holding it: a worker killed with SIGKILL."""
    script = (
        "import asyncio, os, sys\n"
        "from orchestrator.logs import configure_logging\n"
        "from orchestrator.llm.call_process import ModelCallProcess\n"
        "configure_logging('info')\n"
        "async def main():\n"
        "    host = ModelCallProcess()\n"
        "    await host.start()\n"
        "    print(host.pid, flush=True)\n"
        "    await asyncio.sleep(600)\n"
        "asyncio.run(main())\n"
    )
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE, env={**os.environ}
    )
    assert worker.stdout is not None
    child = int((await asyncio.wait_for(worker.stdout.readline(), 30)).decode())
    worker.kill()
    await worker.wait()

    deadline = time.monotonic() + 20  # the child may still be importing litellm when its worker dies
    while not process_gone(child):
        assert time.monotonic() < deadline, f"the model-call process {child} outlived its worker"
        await asyncio.sleep(0.2)
