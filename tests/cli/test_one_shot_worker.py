"""The worker `rlm run` starts for itself: one container started ahead for the root's first cell, booted
while the model writes that cell, and none booted after it (the worker stops with the run)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import docker

from sandbox.docker_backend import MARKER
from tests.orchestrator.harness import word_context

RLM = str(Path(sys.executable).parent / "rlm")


def _rlm_run(tmp_path: Path, context: Path, query: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``rlm run`` with its embedded server and its own worker, on a data directory under ``tmp_path``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "RLM_"))}
    return subprocess.run(
        [RLM, "run", query, "--context", str(context)],
        env={**clean, "RLM_DATA_DIR": str(tmp_path / "data"), **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def _events(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_the_first_cell_of_rlm_run_takes_the_container_its_worker_started_ahead(tmp_path: Path) -> None:
    context, expected = word_context(tmp_path / "c.txt", 2_000)
    # Each model reply takes longer than a container boot here: the pooled one is up before the first
    # cell, and a refill after the take would be up (and logged) while the cell waits on its sub-calls.
    done = _rlm_run(
        tmp_path,
        context,
        "How many times does the word 'ERROR' appear? Use 2 chunks.",
        RLM_MODEL="scripted/mapreduce?latency_ms=3000",
        RLM_SUB_MODEL="scripted/leaf?latency_ms=3000",
        RLM_LOG_LEVEL="info",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == f"{expected}\n"
    events = _events(done.stderr)
    pooled = [e["runtime"] for e in events if e["event"] == "sandbox.pooled"]
    used = [e["runtime"] for e in events if e["event"] == "sandbox.started"]
    assert len(pooled) == 1, pooled  # one ahead, no refill after the take
    assert used == pooled
    workers = {e["worker_id"] for e in events if e["event"] == "worker.started"}
    assert len(workers) == 1
    client = docker.from_env()
    try:
        (worker,) = workers
        assert client.containers.list(all=True, filters={"label": f"{MARKER}.worker={worker}"}) == []
    finally:
        client.close()


def test_rlm_run_without_a_docker_engine_is_one_error_line_and_stores_no_run(tmp_path: Path) -> None:
    context, _ = word_context(tmp_path / "c.txt", 200)
    no_engine = f"unix://{tmp_path / 'no-engine.sock'}"
    done = _rlm_run(tmp_path, context, "How many times does the word 'ERROR' appear?", DOCKER_HOST=no_engine)
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert len(errors) == 1, done.stderr[-3000:]
    assert errors[0].startswith("error: this worker cannot start sandboxes: cannot reach the Docker engine")
    assert "RLM_SANDBOX_BACKEND=process" in errors[0]
    # Refused before the run was submitted: nothing stored, nothing for a later worker to pick up.
    with sqlite3.connect(tmp_path / "data" / "rlm.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
