"""Only user-facing errors (``RlmError``) become one ``error:`` line; a bug keeps its traceback. And the
run options of ``rlm run``, ``rlm submit`` and ``rlm schedule create`` reach the run request intact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from orchestrator.cli import app, job_cmds, run_cmds
from orchestrator.cli.run_options import RunOptions
from orchestrator.runs import RunError
from orchestrator.settings import Settings

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"RLM_DATA_DIR": str(tmp_path), "RLM_DATABASE_URL": "", "TEMPORAL_ADDRESS": ""}


def _status(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, exc: Exception) -> Result:
    def broken(*_: object) -> None:
        raise exc

    monkeypatch.setattr("orchestrator.runs.run_summary", broken)
    return runner.invoke(app, ["status", "r1"], env=env)


def test_user_error_is_one_line(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    result = _status(env, monkeypatch, RunError("run r1 is not known; check the id\nmore detail"))
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == ["error: run r1 is not known; check the id"]


def test_bug_keeps_its_traceback(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # A ValueError is what a bug raises (a bad int(), an unknown enum value), not bad input.
    result = _status(env, monkeypatch, ValueError("invalid literal for int() with base 10: 'x'"))
    assert isinstance(result.exception, ValueError), result.output
    assert "error:" not in result.stderr


class _Captured(Exception):
    """Stops the command right after it built its run request (before any server is needed)."""


def _capture(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[RunOptions]:
    seen: list[RunOptions] = []

    def fake(settings: Settings, query: str, context: Path, opts: RunOptions) -> None:
        seen.append(opts)
        raise _Captured

    monkeypatch.setattr(module, "run_request", fake)
    return seen


OPTIONS = [
    *("--tenant", "t1", "--budget-usd", "0.5", "--max-depth", "3", "--model", "m1", "--sub-model", "m2"),
    *("--deadline", "60", "--max-iterations", "7", "--max-subcalls", "9", "--concurrency", "2"),
    *("--max-tokens", "100", "--compact-at", "0.5", "--context-window", "8000", "--leaf-mode", "inline"),
]
CHOSEN = RunOptions("t1", "0.5", 3, "m1", "m2", 60.0, None, 7, 9, 2, 100, 0.5, 8000, "inline")


def test_run_options_reach_the_request(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    context = str(tmp_path / "c.txt")
    seen = _capture(monkeypatch, run_cmds)
    for args in (["run", "q", "--context", context], ["run", "q", "--context", context, *OPTIONS]):
        assert isinstance(runner.invoke(app, [*args, "--run-id", "r9"], env=env).exception, _Captured)
    assert seen == [RunOptions(run_id="r9"), RunOptions(**{**CHOSEN.__dict__, "run_id": "r9"})]

    seen = _capture(monkeypatch, job_cmds)
    cluster = {**env, "TEMPORAL_ADDRESS": "127.0.0.1:1"}  # never contacted: the capture stops first
    submit = ["submit", "q", "--context", context, "--run-id", "r8", *OPTIONS]
    schedule = ["schedule", "create", "s1", "--cron", "0 2 * * *", "--query", "q", "--context", context]
    for args in (submit, [*schedule, *OPTIONS]):
        result = runner.invoke(app, args, env=cluster)
        assert isinstance(result.exception, _Captured), result.output
    assert seen == [RunOptions(**{**CHOSEN.__dict__, "run_id": "r8"}), CHOSEN]
