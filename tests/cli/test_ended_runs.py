"""What the CLI says about runs that ended: a run or a turn without an answer prints nothing on stdout
(``answer=$(rlm run ...)`` never captures a stand-in), `rlm pause` of an ended run says so instead of
"pausing 0 nodes", and `rlm budget raise` suggests `rlm resume` only when a node waits for it."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from tests.ops.jobs.cli import rlm

NO_PRICE = "acme/durable-rlm-no-such-model"  # no price anywhere: its first model call fails the run


async def test_a_run_or_turn_without_an_answer_prints_nothing_on_stdout(
    cli_env: dict[str, str], words: tuple[Path, int]
) -> None:
    path, _ = words
    name = f"s{uuid.uuid4().hex[:8]}"
    made = await rlm(cli_env, "session", "create", name, "--model", NO_PRICE, "--deadline", "60")
    assert made.code == 0, made.err
    ran, asked = await asyncio.gather(
        rlm(
            cli_env, "run", "How many?", "--context", str(path), "--model", NO_PRICE, "--no-worker", "--quiet"
        ),
        rlm(cli_env, "ask", name, "How many?", "--quiet"),
    )
    assert ran.code == 1 and ran.out == "", (ran.out, ran.err)
    assert "status failed" in ran.err and f"no price known for model '{NO_PRICE}'" in ran.err, ran.err
    assert asked.code == 2 and asked.out == "", (asked.out, asked.err)
    assert " failed" in asked.err, asked.err


async def test_pause_and_budget_raise_of_an_ended_run(
    cli_env: dict[str, str], words: tuple[Path, int]
) -> None:
    path, expected = words
    run_id = f"ended-{uuid.uuid4().hex[:8]}"
    done = await rlm(
        cli_env, "run", "How many times does the word 'ERROR' appear? Use 3 chunks.", "--context", str(path),
        "--model", "scripted/mapreduce", "--budget-usd", "1", "--run-id", run_id, "--no-worker", "--quiet",
    )  # fmt: skip
    assert done.code == 0 and done.out == f"{expected}\n", done.err

    text, doc, node = await asyncio.gather(
        rlm(cli_env, "pause", run_id),
        rlm(cli_env, "pause", run_id, "--json"),
        rlm(cli_env, "pause", f"{run_id}/0"),
    )
    assert text.code == 0 and text.out == f"run {run_id} has ended (completed); nothing was paused\n", text
    assert doc.code == 0 and json.loads(doc.out) == {"target": run_id, "paused": [], "ended": "completed"}
    assert node.code == 0 and node.out == f"node {run_id}/0 has ended (completed); nothing was paused\n", node

    raised = await rlm(cli_env, "budget", "raise", "--run", run_id, "1")
    assert raised.code == 0, raised.err
    assert raised.out == f"run {run_id}: budget $1 -> $2\n"  # no node waits for `rlm resume`
