"""A worker whose model calls run in its model-call process (what `rlm dev` and `rlm worker` do by
default): runs answer as before, a killed model-call process costs retries but no answer and no double
billing, and the worker's stop takes the process with it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from orchestrator.settings import Settings
from orchestrator.vocabulary import ModelCalls
from orchestrator.worker import WorkerOptions, running_worker
from orchestrator.workflows.types import Limits
from tests.conftest import LEAF_MECHANISMS
from tests.orchestrator.harness import Harness, word_context
from tests.orchestrator.test_faults import check_billing
from tests.orchestrator.workers import WorkerProcess, model_call_processes, process_gone

QUERY = "How many times does the word 'ERROR' appear?"
MODEL = "scripted/mapreduce?chunks=40"
SUB_MODEL = "scripted/leaf?latency_ms=300"
IN_CHILD = WorkerOptions(model_calls=ModelCalls.PROCESS, sandbox_pool=0)


@pytest.mark.parametrize("leaf_mode", LEAF_MECHANISMS)
async def test_a_run_answers_with_its_calls_in_the_model_call_process_and_the_stop_ends_it(
    harness: Harness, other_queue: Settings, tmp_path: Path, leaf_mode: str
) -> None:
    path, expected = word_context(tmp_path / "w.txt", 4_000)
    async with running_worker(harness.client, other_queue, IN_CHILD):
        children = model_call_processes()
        out = await harness.run(
            QUERY,
            path,
            model=MODEL,
            sub_model="scripted/leaf",
            limits=Limits(max_concurrency=16, heartbeat_timeout_s=10, leaf_mode=leaf_mode),
            task_queue=other_queue.task_queue,
        )

    assert len(children) == 1
    assert out.result.status == "completed", out.result.error
    assert out.summary.answer == str(expected)
    check_billing(harness, out)
    assert model_call_processes() == []  # the worker's stop took its model-call process with it


@pytest.mark.parametrize("leaf_mode", LEAF_MECHANISMS)
async def test_a_killed_model_call_process_costs_retries_not_answers_or_double_billing(
    harness: Harness, other_queue: Settings, tmp_path: Path, leaf_mode: str
) -> None:
    path, expected = word_context(tmp_path / "w.txt", 8_000)
    async with running_worker(harness.client, other_queue, IN_CHILD):
        handle = await harness.start(
            QUERY,
            path,
            model=MODEL,
            sub_model=SUB_MODEL,
            limits=Limits(max_concurrency=8, heartbeat_timeout_s=10, leaf_mode=leaf_mode),
            task_queue=other_queue.task_queue,
        )
        run_id = handle.id.rsplit("/", 1)[0]
        await harness.leaves_completed(run_id, 8)  # some completed, others in flight
        [first] = model_call_processes()
        os.kill(first, signal.SIGKILL)
        out = await asyncio.wait_for(harness.finish(handle), timeout=240)
        after = model_call_processes()

    assert out.result.status == "completed", out.result.error
    assert out.summary.answer == str(expected)
    leaves = [r for r in out.tree if r.kind == "leaf"]
    assert len(leaves) == 40 and all(r.status == "completed" for r in leaves)
    assert after and first not in after  # the calls after the kill were made by a new process
    check_billing(harness, out)


def test_rlm_worker_makes_its_calls_in_a_child_that_its_stop_ends(
    other_queue: Settings, engine: Engine, tmp_path: Path
) -> None:
    # ``engine`` migrates the schema: the worker checks it before it serves.
    worker = WorkerProcess(other_queue, tmp_path / "worker.log")
    try:
        worker.wait_serving()
        children = model_call_processes(worker.proc.pid)
    finally:
        worker.stop()  # SIGTERM to its whole process group, as a service manager sends it

    assert len(children) == 1
    log = (tmp_path / "worker.log").read_bytes()
    assert b'"model_calls": "process", "event": "worker.started"' in log
    assert b"model_calls.process_stopped" in log
    deadline = time.monotonic() + 10
    while not process_gone(children[0]):
        assert time.monotonic() < deadline, "the model-call process outlived its worker"
        time.sleep(0.1)
