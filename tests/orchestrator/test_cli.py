"""``rlm run`` end to end with the embedded dev server and the zero-setup SQLite store; status, tree."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.orchestrator.harness import word_context

RLM = str(Path(sys.executable).parent / "rlm")


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "RLM_"))}
    env["RLM_DATA_DIR"] = str(data)
    return env


def test_rlm_run_embedded_then_status_and_tree(tmp_path: Path, sandbox_image: str) -> None:
    path, expected = word_context(tmp_path / "words.txt", 5_000)
    env = _env(tmp_path / "data")

    run = subprocess.run(
        [
            RLM,
            "run",
            "How many times does the word 'ERROR' appear? Use 6 chunks.",
            "--context",
            str(path),
            "--model",
            "scripted/mapreduce",
            "--sub-model",
            "scripted/leaf",
            "--run-id",
            "cli-run",
            "--deadline",
            "300",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert run.returncode == 0, run.stderr
    # stdout is the answer alone (answer=$(rlm run ...)); the summary line goes to stderr.
    assert run.stdout == f"{expected}\n"
    summary = next(line for line in run.stderr.splitlines() if line.startswith("status "))
    assert "status completed" in summary and "nodes 7" in summary and "cost $" in summary
    assert "/namespaces/default/workflows/cli-run%2F0" in summary
    # The embedded server kept its state in the data directory and was stopped on exit.
    assert (tmp_path / "data" / "temporal" / "temporal.sqlite3").exists()
    assert (tmp_path / "data" / "rlm.sqlite3").exists()

    status = subprocess.run([RLM, "status", "cli-run"], env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "run cli-run: completed" in status.stdout and f"answer: {expected}" in status.stdout

    tree = subprocess.run([RLM, "tree", "cli-run"], env=env, capture_output=True, text=True, timeout=60)
    assert tree.returncode == 0, tree.stderr
    assert "0 [root] completed | iter 1" in tree.stdout
    assert tree.stdout.count("[leaf] completed") == 6


def test_rlm_run_bad_input_gets_one_line_errors(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    missing = subprocess.run(
        [RLM, "run", "q", "--context", str(tmp_path / "nope.txt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].startswith("error: context ")
    assert "is not a readable file" in missing.stderr

    budget = subprocess.run(
        [RLM, "run", "q", "--context", str(tmp_path), "--budget-usd", "lots"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert budget.returncode == 1 and "error: --budget-usd 'lots' is not a number" in budget.stderr

    detach = subprocess.run(
        [RLM, "run", "q", "--context", str(tmp_path), "--detach"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert detach.returncode == 1 and "--detach needs" in detach.stderr

    unknown = subprocess.run(
        [RLM, "status", "no-such-run"], env=env, capture_output=True, text=True, timeout=60
    )
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: ")


def test_a_session_on_the_zero_setup_store_with_embedded_servers(tmp_path: Path, sandbox_image: str) -> None:
    """Sessions on SQLite with no server running: each `rlm ask` starts the embedded server and a worker
    and stops them with its answer, before the session's workflow records the turn; `session show`
    still reports the ended turn, and the next ask sees it as history."""
    env = _env(tmp_path / "data")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("alpha beta")
    (docs / "b.txt").write_text("gamma")

    def rlm(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([RLM, *args], env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        return done

    rlm("session", "create", "s1", "--model", "scripted/code")
    rlm("session", "add", "s1", str(docs))
    first = rlm("ask", "s1", "kept = len(context); remember(' '.join(context.names)); FINAL(str(kept))")
    assert first.stdout == "2\n"
    shown = json.loads(rlm("session", "show", "s1", "--json").stdout)
    assert [(t["turn"], t["status"], t["answer"]) for t in shown["turns"]] == [(1, "completed", "2")]
    second = rlm("ask", "s1", "FINAL(f\"{kept} {notes[0]} {history[0]['answer']}\")")
    assert second.stdout == "2 a.txt b.txt 2\n"
    # Whether the workflow records a turn before `rlm ask`'s worker stops is a race: make it lose.
    with sqlite3.connect(tmp_path / "data" / "rlm.sqlite3") as db:
        db.execute("UPDATE session_turns SET status = 'running', answer_ref = NULL WHERE turn = 2")
    shown = json.loads(rlm("session", "show", "s1", "--json").stdout)
    assert [(t["status"], t["answer"]) for t in shown["turns"]][1] == ("completed", "2 a.txt b.txt 2")
    # A JSON-lines record is a document as `--context` gives it: its value.
    (tmp_path / "r.jsonl").write_text('{"level": "ERROR", "id": 7}\n')
    rlm("session", "add", "s1", str(tmp_path / "r.jsonl"))
    third = rlm("ask", "s1", "FINAL(f\"{context.names[2]} {context[2]['level']}\")")
    assert third.stdout == "r.jsonl:1 ERROR\n"
