"""``rlm run`` and ``rlm wait`` survive a real network fault between them and Temporal or the store: a
TCP proxy drops every connection and refuses new ones for a while. Past ``--reconnect-for`` they give
up with one line saying the run goes on, exit 7, and no traceback; the run goes on."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

from sqlalchemy import make_url
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError

from orchestrator.devstack import DevServer
from orchestrator.runs import ExitCode, wait_for_run
from orchestrator.workflows import RLMNode
from tests.cli.proxy import Proxy, proxy_to
from tests.ops.jobs.cli import RLM, Done
from tests.orchestrator.harness import Harness

COUNT = "How many times does the word 'ERROR' appear? Use 3 chunks."
# Longer than the SDK's own retries of one call (about 10 s), so the outage reaches the command.
TEMPORAL_OUTAGE_S = 15.0
STORE_OUTAGE_S = 4.0
# Leaves slow enough that a run outlasts `rlm wait`'s start and the fault.
SLOW_LEAF = "scripted/leaf?latency_ms=8000"


async def _spawn(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        RLM, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def _finish(proc: asyncio.subprocess.Process, timeout_s: float = 180) -> Done:
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return Done(proc.returncode, out.decode(), err.decode())


async def _started(client: Client, workflow_id: str, proc: asyncio.subprocess.Process) -> None:
    end = time.monotonic() + 120
    while time.monotonic() < end:
        assert proc.returncode is None, "rlm ended before its run started"
        try:
            await client.get_workflow_handle(workflow_id).describe()
            return
        except RPCError:
            await asyncio.sleep(0.2)
    raise AssertionError(f"{workflow_id} was not started")


async def _temporal_proxy(temporal: DevServer) -> tuple[str, int]:
    host, port = temporal.address.rsplit(":", 1)
    return host, int(port)


async def _run_through(
    proxy: Proxy, cli_env: dict[str, str], path: Path, run_id: str, *extra: str
) -> asyncio.subprocess.Process:
    """``rlm run`` via the proxy, without a worker: the session's worker (not behind the proxy) runs the
    tree, whose leaves take a few seconds each."""
    env = {**cli_env, "TEMPORAL_ADDRESS": proxy.address}
    return await _spawn(
        env, "run", COUNT, "--context", str(path), "--run-id", run_id, "--model", "scripted/mapreduce",
        "--sub-model", "scripted/leaf?latency_ms=3000", "--no-worker", *extra,
    )  # fmt: skip


async def test_rlm_run_waits_through_a_temporal_outage_and_prints_the_answer(
    cli_env: dict[str, str], words: tuple[Path, int], temporal: DevServer, client: Client
) -> None:
    path, expected = words
    run_id = f"outage-{uuid.uuid4().hex[:8]}"
    async with proxy_to(*await _temporal_proxy(temporal)) as proxy:
        proc = await _run_through(proxy, cli_env, path, run_id)
        await _started(client, f"{run_id}/0", proc)
        await asyncio.sleep(0.5)
        proxy.drop()
        await asyncio.sleep(TEMPORAL_OUTAGE_S)
        proxy.restore()
        done = await _finish(proc)
    assert done.code == 0, done.err
    assert done.out == f"{expected}\n"
    assert "contact.lost" in done.err and "contact.back" in done.err
    assert "Traceback" not in done.err
    assert not [line for line in done.err.splitlines() if line.startswith("error:")], done.err


async def test_rlm_run_gives_up_with_one_line_and_exit_7_and_the_run_goes_on(
    cli_env: dict[str, str], words: tuple[Path, int], temporal: DevServer, client: Client
) -> None:
    path, expected = words
    run_id = f"lost-{uuid.uuid4().hex[:8]}"
    async with proxy_to(*await _temporal_proxy(temporal)) as proxy:
        proc = await _run_through(proxy, cli_env, path, run_id, "--reconnect-for", "2")
        await _started(client, f"{run_id}/0", proc)
        proxy.drop()
        done = await _finish(proc)
    assert done.code == ExitCode.LOST_CONTACT, done.err
    assert done.out == "" and "Traceback" not in done.err
    errors = [line for line in done.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.err
    assert errors[0].startswith(f"error: no answer from Temporal at 127.0.0.1:{proxy.port} for ")
    assert errors[0].endswith(f"run {run_id} goes on: follow it with `rlm wait {run_id}`")
    result = await asyncio.wait_for(client.get_workflow_handle_for(RLMNode.run, f"{run_id}/0").result(), 120)
    assert result.answer is not None and result.answer.inline == str(expected)


def _store_via(proxy: Proxy, url: str) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


async def _wait_through(
    proxy: Proxy, cli_env: dict[str, str], pg_schema_url: str, run_id: str, *extra: str
) -> asyncio.subprocess.Process:
    env = {**cli_env, "RLM_DATABASE_URL": _store_via(proxy, pg_schema_url)}
    proc = await _spawn(env, "wait", run_id, "--json", *extra)
    # The command's first reads (schema check, first poll) pass before the fault; then it polls.
    end = time.monotonic() + 60
    while proxy.connections == 0:
        assert time.monotonic() < end and proc.returncode is None, "rlm wait never reached the store"
        await asyncio.sleep(0.1)
    await asyncio.sleep(3.0)
    assert proc.returncode is None, "the run ended before the fault"
    return proc


async def test_rlm_wait_waits_through_a_store_outage(
    harness: Harness, cli_env: dict[str, str], pg_schema_url: str, words: tuple[Path, int]
) -> None:
    path, expected = words
    handle = await harness.start(COUNT, path, model="scripted/mapreduce", sub_model=SLOW_LEAF)
    run_id = handle.id.rsplit("/", 1)[0]
    url = make_url(pg_schema_url)
    async with proxy_to(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proc = await _wait_through(proxy, cli_env, pg_schema_url, run_id)
        proxy.drop()
        await asyncio.sleep(STORE_OUTAGE_S)
        proxy.restore()
        done = await _finish(proc)
    assert done.code == 0, done.err
    doc = json.loads(done.out)
    assert doc["status"] == "completed" and doc["answer"] == str(expected)
    assert "contact.lost" in done.err and "contact.back" in done.err and "Traceback" not in done.err


async def test_rlm_wait_gives_up_with_one_line_and_exit_7(
    harness: Harness,
    cli_env: dict[str, str],
    pg_schema_url: str,
    words: tuple[Path, int],
    sessions: sessionmaker[Session],
) -> None:
    path, _ = words
    handle = await harness.start(COUNT, path, model="scripted/mapreduce", sub_model=SLOW_LEAF)
    run_id = handle.id.rsplit("/", 1)[0]
    url = make_url(pg_schema_url)
    async with proxy_to(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proc = await _wait_through(proxy, cli_env, pg_schema_url, run_id, "--reconnect-for", "2")
        proxy.drop()
        done = await _finish(proc)
    assert done.code == ExitCode.LOST_CONTACT, done.err
    assert done.out == "" and "Traceback" not in done.err
    errors = [line for line in done.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: no answer from the store for "), done.err
    assert errors[0].endswith(f"run {run_id} goes on: follow it with `rlm wait {run_id}`")
    outcome = await wait_for_run(sessions, run_id, 120)
    assert outcome.code == ExitCode.ANSWERED
