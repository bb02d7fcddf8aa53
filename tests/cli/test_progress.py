"""Live progress of a waiting command (issue 13, point 2): on a terminal a view redrawn while the run works,
elsewhere a plain ``progress ...`` line every ``--progress-every`` seconds; stdout holds the answer alone.
``rlm watch`` follows a detached run until it ends, prints nothing on stdout, and leaves on Ctrl-C with
exit 130 and the cursor shown again.

Real dev server, store, Docker sandbox and worker (the session fixtures); the model is scripted, with
latency so that the run lasts a few seconds: the root's cell waits on four slow sub-calls.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import select
import signal
import struct
import termios
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url

from tests.cli.proxy import proxy_to
from tests.ops.jobs.cli import RLM, Done, rlm
from tests.orchestrator.harness import Harness

QUERY = "How many times does the word 'ERROR' appear? Use 4 chunks."
SLOW = ("--model", "scripted/mapreduce?latency_ms=1000", "--sub-model", "scripted/mapreduce?latency_ms=4000")
WATCH = (RLM, "watch")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SHOW_CURSOR = "\x1b[?25h"


@dataclass(frozen=True)
class OnPty:
    code: int
    out: str  # stdout: a pipe
    raw: str  # stderr as the terminal received it


def _drain(master: int, pid: int, exited: threading.Event, interrupt_on: str | None) -> str:
    """What the terminal shows, until the command and its children are gone; SIGINT once
    ``interrupt_on`` has appeared twice (a frame was drawn and redrawn)."""
    got = b""
    sent = False
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if not ready:
            if exited.is_set():
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not chunk:
            break
        got += chunk
        if interrupt_on and not sent and ANSI.sub("", got.decode(errors="replace")).count(interrupt_on) >= 2:
            os.kill(pid, signal.SIGINT)
            sent = True
    os.close(master)
    return got.decode(errors="replace")


async def _on_pty(env: dict[str, str], *argv: str, interrupt_on: str | None = None) -> OnPty:
    """Run ``argv`` with stderr on a pseudo-terminal (120 columns) and stdout on a pipe."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env={**env, "TERM": "xterm-256color"},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    exited = threading.Event()
    drained = asyncio.ensure_future(asyncio.to_thread(_drain, master, proc.pid, exited, interrupt_on))
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    exited.set()
    raw = await asyncio.wait_for(drained, 30)
    assert proc.returncode is not None
    return OnPty(proc.returncode, out.decode(), raw)


async def _piped(env: dict[str, str], *argv: str) -> Done:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return Done(proc.returncode, out.decode(), err.decode())


def _progress_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("progress ")]


async def test_rlm_run_shows_a_live_view_on_a_terminal_and_stdout_holds_the_answer(
    cli_env: dict[str, str], words: tuple[Path, int]
) -> None:
    path, expected = words
    run_id = f"live-{uuid.uuid4().hex[:8]}"
    done = await _on_pty(
        cli_env, RLM, "run", QUERY, "--context", str(path), *SLOW, "--no-worker", "--run-id", run_id
    )
    shown = ANSI.sub("", done.raw)
    assert done.code == 0, shown
    assert done.out == f"{expected}\n", (done.out, shown)
    # Redrawn while the run worked: several frames, with what the root was doing.
    assert shown.count("sub-calls") >= 2, shown
    assert "nodes" in shown and f"{run_id} · running" in shown, shown
    assert "iteration 1: running cell 1 of 1, waiting on 4 sub-calls" in shown, shown
    assert "progress " not in shown  # the plain lines are for logs, not terminals
    assert SHOW_CURSOR in done.raw  # the view gave the terminal back


async def test_rlm_run_writes_plain_progress_lines_without_a_terminal(
    cli_env: dict[str, str], words: tuple[Path, int]
) -> None:
    path, expected = words
    run_id = f"plain-{uuid.uuid4().hex[:8]}"
    env = {**cli_env, "RLM_PROGRESS_EVERY": "1"}
    done = await rlm(env, "run", QUERY, "--context", str(path), *SLOW, "--no-worker", "--run-id", run_id)
    assert done.code == 0, done.err
    assert done.out == f"{expected}\n", done.out
    lines = _progress_lines(done.err)
    assert lines, done.err
    assert all(f"run {run_id} · " in line and "| sub-calls " in line for line in lines), lines
    assert any("| root iteration 1: running cell 1 of 1, waiting on" in line for line in lines), lines
    assert "\x1b[" not in done.err  # no terminal codes in a log

    quiet = await rlm(env, "wait", run_id, "--quiet")
    assert quiet.code == 0 and not _progress_lines(quiet.err), quiet.err


async def test_rlm_watch_follows_a_detached_run_to_its_end(
    cli_env: dict[str, str], words: tuple[Path, int]
) -> None:
    path, expected = words
    run_id = f"watch-{uuid.uuid4().hex[:8]}"
    started = await rlm(
        cli_env, "submit", QUERY, "--context", str(path), *SLOW, "--run-id", run_id, "--detach"
    )
    assert started.code == 0, started.err

    plain, interrupted = await asyncio.gather(
        _piped(cli_env, *WATCH, run_id, "--progress-every", "1"),
        _on_pty(cli_env, *WATCH, run_id, interrupt_on="sub-calls"),
    )
    # Ctrl-C: the view stops, the cursor comes back, exit 130; the run is not touched.
    shown = ANSI.sub("", interrupted.raw)
    assert interrupted.code == 130, shown
    assert "interrupted; the run goes on" in shown and interrupted.out == "", shown
    assert SHOW_CURSOR in interrupted.raw.rsplit("sub-calls", 1)[1], interrupted.raw
    # The other watch stayed to the end: progress lines, the outcome on stderr, nothing on stdout.
    assert plain.code == 0, plain.err
    assert plain.out == "", plain.out
    assert _progress_lines(plain.err), plain.err
    assert f"run {run_id}: completed (exit 0: answered)" in plain.err
    assert f"answer: {expected}" in plain.err


async def test_rlm_watch_of_an_unknown_run_is_one_line(cli_env: dict[str, str]) -> None:
    done = await _piped(cli_env, *WATCH, "no-such-run")
    assert done.code == 1 and done.out == "", done
    assert done.err.startswith("error: run 'no-such-run' does not exist"), done.err
    assert len(done.err.strip().splitlines()) == 1, done.err


async def test_progress_skips_frames_through_a_store_outage_and_the_wait_goes_on(
    harness: Harness, cli_env: dict[str, str], pg_schema_url: str, words: tuple[Path, int]
) -> None:
    path, expected = words
    handle = await harness.start(
        QUERY, path, model="scripted/mapreduce", sub_model="scripted/leaf?latency_ms=8000"
    )
    run_id = handle.id.rsplit("/", 1)[0]
    url = make_url(pg_schema_url)
    async with proxy_to(url.host or "127.0.0.1", url.port or 5432) as proxy:
        via = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        env = {**cli_env, "RLM_DATABASE_URL": via}
        proc = await asyncio.create_subprocess_exec(
            RLM,
            "wait",
            run_id,
            "--progress-every",
            "1",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        seen = b""
        while b"progress run" not in seen:  # a line read through the proxy, then the fault
            seen += await asyncio.wait_for(proc.stderr.readline(), 60)
        proxy.drop()
        await asyncio.sleep(4.0)
        proxy.restore()
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    text = seen.decode() + err.decode()
    assert proc.returncode == 0, text
    assert f"answer: {expected}" in out.decode()
    lines = _progress_lines(text)
    failed = [i for i, line in enumerate(lines) if "no answer from the store" in line]
    assert failed, text
    assert any("| sub-calls " in line for line in lines[failed[-1] + 1 :]), text  # frames came back
    assert "Traceback" not in text


async def test_rlm_run_quiet_says_once_that_the_run_waits_for_a_budget(
    cli_env: dict[str, str], words: tuple[Path, int]
) -> None:
    path, expected = words
    run_id = f"held-{uuid.uuid4().hex[:8]}"
    proc = await asyncio.create_subprocess_exec(
        RLM, "run", QUERY, "--context", str(path), "--model", "scripted/mapreduce", "--budget-usd", "0.001",
        "--no-worker", "--run-id", run_id, "--quiet",
        env=cli_env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    seen = ""
    while "waits for an operator" not in seen:  # without the note, --quiet blocks in silence
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert line, f"rlm run ended before its pause was said: {seen}"
        seen += line.decode()
    note = seen.splitlines()[-1]
    assert note.startswith(f"run {run_id} waits for an operator: "), note
    assert "paused: budget" in note and f"`rlm resume {run_id}`" in note, note

    raised = await rlm(cli_env, "budget", "raise", "--run", run_id, "0.5")
    resumed = await rlm(cli_env, "resume", run_id)
    assert raised.code == 0 and resumed.code == 0, (raised.err, resumed.err)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    text = seen + err.decode()
    assert proc.returncode == 0, text
    assert out.decode() == f"{expected}\n"
    assert text.count("waits for an operator") == 1, text
    assert not _progress_lines(text), text
