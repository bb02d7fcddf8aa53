"""Point 13's bad inputs: each gets one ``error:`` line naming the option or file and the fix, exit 1, and
nothing stored (no run row, no blob), on all three paths that start runs: ``rlm run``, ``rlm submit``,
``rlm schedule create`` (and their library functions, which make the same one check)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from orchestrator.runs import MAX_DEADLINE_S, RunError, RunRequest, prepare_run, submit_run
from orchestrator.schedules import ScheduleRequest, create_schedule
from orchestrator.settings import Settings
from orchestrator.store import blob_exists, get_run
from orchestrator.store.errors import NotFound
from tests.ops.jobs.cli import rlm


def _inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (the run's arguments after QUERY's place, a pattern the one error line must match)."""
    (tmp / "bad.json").write_text('{"docs": ["a",\n  "b" "c"]}')
    (tmp / "empty.txt").write_bytes(b"")
    (tmp / "blank.txt").write_text(" \n\t\n")
    (tmp / "program").write_bytes(Path(sys.executable).resolve().read_bytes()[:4096])  # an ELF header
    (tmp / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    ok = tmp / "ok.txt"
    ok.write_text(f"a fine context {uuid.uuid4().hex}")
    (tmp / "empty-dir").mkdir()
    (tmp / "mixed").mkdir()
    (tmp / "mixed" / "a.txt").write_text("fine")
    (tmp / "mixed" / "b.txt").write_bytes(b"fine, then caf\xe9")
    (tmp / "many").mkdir()
    for i in range(MAX_DOCUMENTS + 1):
        (tmp / "many" / f"{i}.txt").write_text(f"document {i}")
    (tmp / "big.txt").write_text("x" * (MAX_BYTES + 1))
    (tmp / "records.jsonl").write_text('"one"\n{"two": 2\n')
    (tmp / "again").mkdir()
    (tmp / "again" / "ok.txt").write_text("another ok.txt")
    kinds = "a UTF-8 text file, a .json or .jsonl file, or a directory of text files"
    return {
        "bad json": (
            ["q?", "--context", str(tmp / "bad.json")],
            rf"context {tmp / 'bad.json'} is not valid JSON: Expecting ',' delimiter at line 2 column 7",
        ),
        "empty": (["q?", "--context", str(tmp / "empty.txt")], rf"context .*empty.txt is empty; .*{kinds}"),
        "blank": (["q?", "--context", str(tmp / "blank.txt")], rf"context .*blank.txt is empty; .*{kinds}"),
        "binary": (
            ["q?", "--context", str(tmp / "program")],
            rf"context .*program is a binary file.*{kinds}",
        ),
        "latin-1": (["q?", "--context", str(tmp / "latin1.txt")], rf"is not UTF-8 text .*{kinds}"),
        "empty directory": (
            ["q?", "--context", str(tmp / "empty-dir")],
            r"context .*empty-dir holds no documents \(hidden files are skipped\)",
        ),
        "latin-1 in a directory": (
            ["q?", "--context", str(tmp / "mixed")],
            r"context .*mixed/b.txt is not UTF-8 text \(byte offset 14\)",
        ),
        "too many documents": (
            ["q?", "--context", str(tmp / "many")],
            rf"context holds more than {MAX_DOCUMENTS} documents; .*RLM_CONTEXT_MAX_DOCUMENTS",
        ),
        "too many bytes": (
            ["q?", "--context", str(tmp / "big.txt")],
            rf"context holds more than {MAX_BYTES:,} bytes \(reached at .*big.txt\)",
        ),
        "bad jsonl line": (
            ["q?", "--context", str(tmp / "records.jsonl")],
            r"context .*records.jsonl line 2 is not valid JSON",
        ),
        "duplicate name": (
            ["q?", "--context", str(ok), "--context", str(tmp / "again")],
            r"two documents are named 'ok.txt'",
        ),
        "missing": (
            ["q?", "--context", str(ok), "--context", str(tmp / "nowhere")],
            r"context .*nowhere is not a readable file \(it does not exist\)",
        ),
        "empty query": (["", "--context", str(ok)], "the query is empty"),
        "blank query": (["  \n ", "--context", str(ok)], "the query is empty"),
        "deadline inf": (
            ["q?", "--context", str(ok), "--deadline", "inf"],
            r"--deadline inf is out of range",
        ),
        "deadline nan": (
            ["q?", "--context", str(ok), "--deadline", "nan"],
            r"--deadline nan is out of range",
        ),
        "deadline 0": (["q?", "--context", str(ok), "--deadline", "0"], r"--deadline 0 is out of range"),
        "deadline 2y": (
            ["q?", "--context", str(ok), "--deadline", "63072000"],
            r"at most 31536000 \(one year\)",
        ),
        "compact at 1": (
            ["q?", "--context", str(ok), "--compact-at", "1"],
            r"--compact-at 1 must be >= 0 and < 1 \(0: never compact\)",
        ),
        "compact at nan": (
            ["q?", "--context", str(ok), "--compact-at", "nan"],
            r"--compact-at nan must be >= 0",
        ),
        # Past the Temporal server's default limit of pending child workflows the node stands still.
        "concurrency 1001": (
            ["q?", "--context", str(ok), "--concurrency", "1001"],
            r"--concurrency 1001 is out of range; give at most 1000$",
        ),
        "scripted model": (
            ["q?", "--context", str(ok), "--model", "scripted/bogus"],
            r"scripted model 'scripted/bogus': unknown policy 'bogus'; use one of search, ",
        ),
        "scripted sub-model": (
            ["q?", "--context", str(ok), "--sub-model", "scripted/leaf?latency_ms=soon"],
            r"scripted model 'scripted/leaf\?latency_ms=soon': latency_ms='soon' is not a number",
        ),
        "context window -1": (
            ["q?", "--context", str(ok), "--context-window", "-1"],
            r"--context-window -1 must be >= 0",
        ),
    }


# Small limits for this test's store, so that a corpus past them is a few files.
MAX_DOCUMENTS = 3
MAX_BYTES = 100_000


def _rows(store: Path) -> tuple[int, int]:
    with sqlite3.connect(store) as db:
        runs = db.execute("SELECT count(*) FROM runs").fetchone()[0]
        blobs = db.execute("SELECT count(*) FROM blobs").fetchone()[0]
    return int(runs), int(blobs)


def _argv(command: str, args: list[str]) -> list[str]:
    query, rest = args[0], args[1:]
    if command == "run":
        return ["run", query, *rest, "--no-worker"]
    if command == "submit":
        return ["submit", query, *rest, "--detach"]
    return [
        "schedule",
        "create",
        f"bad-{uuid.uuid4().hex[:6]}",
        "--cron",
        "0 2 * * *",
        "--query",
        query,
        *rest,
    ]


@pytest.mark.parametrize("command", ["run", "submit", "schedule"])
async def test_bad_input_is_one_error_line_and_nothing_is_stored(
    tmp_path: Path, cli_env: dict[str, str], command: str
) -> None:
    # A store of its own, migrated and empty, so that counting its rows says what the command stored.
    env = {**cli_env, "RLM_DATA_DIR": str(tmp_path / "data")}
    env |= {"RLM_CONTEXT_MAX_DOCUMENTS": str(MAX_DOCUMENTS), "RLM_CONTEXT_MAX_BYTES": str(MAX_BYTES)}
    env.pop("RLM_DATABASE_URL")
    if command == "run":
        env.pop("TEMPORAL_ADDRESS")  # nothing may be started for bad input: no embedded server either
    upgraded = await rlm(env, "db", "upgrade")
    assert upgraded.code == 0, upgraded.err
    store = tmp_path / "data" / "rlm.sqlite3"

    cases = _inputs(tmp_path)
    done = await asyncio.gather(*(rlm(env, *_argv(command, args)) for args, _ in cases.values()))
    for (name, (_, pattern)), result in zip(cases.items(), done, strict=True):
        lines = result.err.strip().splitlines()
        assert result.code == 1, (name, result.err)
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, result.err)
        assert re.search(pattern, lines[0]), (name, lines[0])
        assert result.out == "", name
    assert _rows(store) == (0, 0)


async def test_the_library_paths_make_the_same_check_before_storing(
    tmp_path: Path, client: Client, sessions: sessionmaker[Session], settings: Settings
) -> None:
    # The three functions that store a run's input, called directly (as a scheduler's code may).
    context = tmp_path / "fresh.txt"
    context.write_text(f"never stored {uuid.uuid4().hex}")
    bad_json = tmp_path / "fresh.json"
    bad_json.write_text(f'{{"never stored": "{uuid.uuid4().hex}"')
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / context.name).write_text("a second document of the same name")
    base = RunRequest("q?", context, run_id=f"bad-{uuid.uuid4().hex[:8]}")
    bad = [
        replace(base, query=" "),
        replace(base, deadline_s=float("inf")),
        replace(base, deadline_s=MAX_DEADLINE_S * 2),
        replace(base, context_path=bad_json),
        replace(base, context_path=(context, clash)),
        replace(base, sub_model="scripted/nope"),
    ]
    for req in bad:
        with pytest.raises(RunError):
            prepare_run(sessions, req)
        with pytest.raises(RunError):
            await submit_run(client, sessions, req, settings.task_queue)
        with pytest.raises(RunError):
            await create_schedule(
                client, sessions, ScheduleRequest(f"bad-{uuid.uuid4().hex[:6]}", "0 2 * * *", req), "q"
            )
    with sessions() as s:
        with pytest.raises(NotFound):
            get_run(s, base.run_id or "")
        for path in (context, bad_json):
            assert not blob_exists(s, hashlib.sha256(path.read_bytes()).hexdigest())
