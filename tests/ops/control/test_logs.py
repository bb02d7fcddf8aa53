"""A worker subprocess logs JSON lines to stderr (not a terminal), activity events bound to their node
(its model-call process's too), and what that process imported in the background at its start."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from orchestrator.logs import LogLevelError, configure_logging
from orchestrator.settings import Settings
from orchestrator.workflows.types import Limits
from tests.orchestrator.harness import Harness

RLM = str(Path(sys.executable).parent / "rlm")


async def test_worker_logs_json_with_run_node_and_tenant(
    harness: Harness, rlm_env: dict[str, str], other_queue: Settings, tmp_path: Path
) -> None:
    env = {**rlm_env, "RLM_TASK_QUEUE": other_queue.task_queue, "RLM_LOG_LEVEL": "info"}
    worker = await asyncio.create_subprocess_exec(
        RLM, "worker", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    assert worker.stderr is not None
    err: list[str] = []
    imported = asyncio.Event()
    reading = asyncio.create_task(_read_lines(worker.stderr, err, "model_calls.preimported", imported))
    try:
        path = tmp_path / "c.txt"
        path.write_text("the magic number is 4242")
        handle = await harness.start(
            "What is the magic number?",
            path,
            model="scripted/search",
            task_queue=other_queue.task_queue,
            limits=Limits(heartbeat_timeout_s=10),
        )
        result = await asyncio.wait_for(handle.result(), 90)
        assert result.status == "completed"
        # The imports run on a thread once the worker serves; a fast run can end before they do.
        await asyncio.wait_for(imported.wait(), 60)
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), 60)
        await reading
    run_id = handle.id.rsplit("/", 1)[0]

    lines = [line for line in err if line.strip().startswith("{")]
    events = [json.loads(line) for line in lines]
    assert events and all("event" in e and "timestamp" in e and "level" in e for e in events)
    ours = [e for e in events if e.get("activity") in ("generate", "execute", "record_node")]
    names = {e["event"] for e in ours}
    assert {"generate.finished", "cell.finished", "node.status"} <= names
    # What the OpenAI client would import on its first request, imported at the model-call process's start.
    (preimported,) = [e for e in events if e["event"] == "model_calls.preimported"]
    assert preimported["modules"] == ["openai.resources"]
    # The model calls, made in that process, are logged with the context the worker bound for them.
    assert any(e["event"] == "llm.completed" and e["activity"] == "generate" for e in ours)
    for event in ours:
        assert (event["run_id"], event["node_id"], event["tenant"]) == (run_id, handle.id, "default"), event


async def _read_lines(
    stream: asyncio.StreamReader, into: list[str], wanted: str, seen: asyncio.Event
) -> None:
    """Collect the lines of ``stream`` until its end, setting ``seen`` once a line names ``wanted``."""
    async for raw in stream:
        line = raw.decode()
        into.append(line)
        if wanted in line:
            seen.set()


def test_log_level_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_LOG_LEVEL", "chatty")
    with pytest.raises(LogLevelError, match="RLM_LOG_LEVEL='chatty' is not a level; use one of debug"):
        configure_logging("info")
