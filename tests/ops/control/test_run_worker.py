"""``rlm run`` runs on the live worker that already serves the task queue, and starts one of its own only
when none does (or when ``--worker`` asks for one)."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from orchestrator.store import live_workers
from tests.ops.control.helpers import rlm
from tests.orchestrator.harness import Harness, word_context

QUERY = "How many times does the word 'ERROR' appear? Use 2 chunks."
MODELS = ("--model", "scripted/mapreduce", "--sub-model", "scripted/leaf", "--quiet")


async def test_rlm_run_uses_the_serving_worker_unless_told_otherwise(
    harness: Harness, rlm_env: dict[str, str], tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    path, expected = word_context(tmp_path / "words.txt", 2_000)
    rlm_env = {**rlm_env, "RLM_LOG_LEVEL": "info"}
    code, out, err = await rlm(rlm_env, "run", QUERY, "--context", str(path), *MODELS)
    assert code == 0, err
    assert out == f"{expected}\n"
    used = re.search(r"^using worker (\S+), which serves (\S+)$", err, re.M)
    assert used is not None, err
    with sessions() as s:
        assert used.group(1) in live_workers(s)
    assert used.group(2) == harness.settings.task_queue
    assert "worker.started" not in err  # no worker of its own

    code, out, err = await rlm(rlm_env, "run", QUERY, "--context", str(path), *MODELS, "--worker")
    assert code == 0, err
    assert out == f"{expected}\n"
    assert "using worker" not in err and "worker.started" in err


async def test_rlm_run_starts_a_worker_when_none_serves_the_queue(
    harness: Harness, rlm_env: dict[str, str], tmp_path: Path
) -> None:
    path, expected = word_context(tmp_path / "words.txt", 2_000)
    env = {**rlm_env, "RLM_TASK_QUEUE": "served-by-nobody-yet", "RLM_LOG_LEVEL": "info"}
    code, out, err = await rlm(env, "run", QUERY, "--context", str(path), *MODELS)
    assert code == 0, err
    assert out == f"{expected}\n"
    assert "using worker" not in err and "worker.started" in err
