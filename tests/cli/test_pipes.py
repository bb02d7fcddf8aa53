"""A command whose stdout reader went away (``rlm tree RUN | head -1`` after head exited) ends quietly,
as Unix tools do: exit 141 (128 + SIGPIPE), no ``error:`` line, no traceback."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

from orchestrator.cli.output import PIPE_CLOSED
from tests.ops.jobs.cli import RLM, Done, rlm

RUN = (
    "run",
    "How many times does the word 'ERROR' appear? Use 3 chunks.",
    "--model",
    "scripted/mapreduce",
    "--no-worker",
)


async def _into_closed_pipe(env: dict[str, str], *args: str) -> Done:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes a byte
    try:
        proc = await asyncio.create_subprocess_exec(
            RLM, *args, env=env, stdout=write_end, stderr=asyncio.subprocess.PIPE
        )
    finally:
        os.close(write_end)
    _, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode is not None
    return Done(proc.returncode, "", err.decode())


async def test_commands_whose_reader_went_away_end_quietly(
    cli_env: dict[str, str], words: tuple[Path, int]
) -> None:
    path, expected = words
    run_id = f"pipe-{uuid.uuid4().hex[:8]}"
    made = await rlm(cli_env, *RUN, "--context", str(path), "--run-id", run_id)
    assert made.code == 0 and made.out == f"{expected}\n", made.err

    commands = [
        (*RUN, "--context", str(path)),
        ("status", run_id),
        ("tree", run_id),
        ("tree", run_id, "--json"),
        ("wait", run_id),
        ("tenant", "show"),
        ("version",),
    ]
    done = await asyncio.gather(*(_into_closed_pipe(cli_env, *args) for args in commands))
    for args, result in zip(commands, done, strict=True):
        assert result.code == PIPE_CLOSED == 141, (args, result.code, result.err)
        assert "Traceback" not in result.err and "Broken pipe" not in result.err, (args, result.err)
        assert not [line for line in result.err.splitlines() if line.startswith("error:")], (args, result.err)
