"""The summary ``rlm run`` prints for an aborted run is its final cost: the model calls the abort cut
short close their holds a moment after the root ends (stopped, or charged if they returned first), and
the summary waits for them, on a worker that serves the queue and on the worker ``rlm run`` started for
itself; ``rlm wait --json`` gives the same cost."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.store import get_run, list_nodes
from orchestrator.vocabulary import NodeKind, Status
from tests.ops.control.helpers import RLM, eventually, leaves_in_flight, rlm
from tests.orchestrator.harness import Harness, word_context

QUERY = "How many times does the word 'ERROR' appear? Use 8 chunks."
IN_FLIGHT = 4


@pytest.mark.parametrize("own_worker", [False, True], ids=["serving-worker", "own-worker"])
async def test_the_summary_of_an_aborted_run_counts_the_calls_it_cut_short(
    harness: Harness,
    rlm_env: dict[str, str],
    tmp_path: Path,
    sessions: sessionmaker[Session],
    own_worker: bool,
) -> None:
    path, _ = word_context(tmp_path / "words.txt", 2_000)
    suffix = uuid.uuid4().hex[:8]
    # A queue nobody serves makes `rlm run` start its own worker.
    env = {**rlm_env, "RLM_TASK_QUEUE": f"abort-summary-{suffix}"} if own_worker else rlm_env
    run_id = f"abort-summary-{suffix}"
    models = ("--model", "scripted/mapreduce", "--sub-model", "scripted/leaf?latency_ms=4000")
    limits = ("--concurrency", str(IN_FLIGHT))
    args = ("run", QUERY, "--context", str(path), "--run-id", run_id, *models, *limits)
    proc = await asyncio.create_subprocess_exec(
        RLM, *args, "--quiet", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:

        async def calling() -> bool | None:
            if proc.returncode is not None:
                _, early = await proc.communicate()
                raise AssertionError(f"rlm run ended before the abort: {early.decode()}")
            return True if leaves_in_flight(sessions, run_id) >= IN_FLIGHT else None

        await eventually(calling, f"{IN_FLIGHT} leaves calling their model", timeout_s=60)
        code, out, err = await rlm(env, "abort", run_id)
        if code != 0:
            if proc.returncode is None:
                proc.kill()
            _, run_err = await proc.communicate()
            raise AssertionError(f"rlm abort: {out} {err}\nrlm run's stderr:\n{run_err.decode()}")
        _, raw_err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "still open" not in raw_err.decode()  # its own worker stayed until they closed
    printed = re.search(r"^status aborted \| cost \$([0-9.]+) \|", raw_err.decode(), re.M)
    assert printed is not None, raw_err.decode()

    with sessions() as s:
        run = get_run(s, run_id)
        leaves = [n for n in list_nodes(s, run_id) if n.kind == NodeKind.LEAF]
        cut_short = [n for n in leaves if n.status == Status.ABORTED]
        assert run.reserved_nanos == 0
        assert Decimal(printed.group(1)) == run.spent
    assert len(cut_short) >= IN_FLIGHT  # the abort came while they were calling

    code, out, err = await rlm(env, "wait", run_id, "--json")
    assert code == 5, err  # aborted
    waited = json.loads(out)
    assert (Decimal(waited["cost_usd"]), waited["reserved_usd"]) == (run.spent, "0")
