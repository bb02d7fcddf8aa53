"""``rlm run``'s quick parse passes exactly what Typer would pass, and leaves every other command line to
Typer (``orchestrator.cli.quick_args``)."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from typer.testing import CliRunner

from orchestrator.cli import quick_args, run_cmds

RLM = Path(sys.executable).parent / "rlm"
BENCH = [
    "What is the magic number?",
    "--context",
    "needle.txt",
    "--model",
    "openai/search?latency_ms=0",
    "--sub-model",
    "openai/search?latency_ms=0",
]
PLAIN = [
    BENCH,
    ["q", "--context", "a.txt"],
    ["--context=a.txt", "--context", "b/c", "--quiet", "--detach", "", "--leaf-mode", "inline"],
    [
        "--tenant",
        "acme",
        "--budget-usd",
        "0.50",
        "--max-depth",
        "0",
        "--deadline",
        "60.25",
        "--run-id",
        "r-1",
        "--no-detach",
        "q",
        "--max-iterations",
        "3",
        "--max-subcalls=0",
        "--concurrency",
        "128",
        "--max-tokens",
        "100",
        "--compact-at",
        "0.5",
        "--context-window",
        "8000",
        "--worker",
        "--reconnect-for",
        "10",
        "--progress-every",
        "0",
        "--context",
        "x.json",
        "--model=",
    ],
    ["q", "--no-worker", "--deadline", "7", "--context", "a b.txt", "--sub-model", "m --x"],
]
LEFT_TO_TYPER = [
    ["--help"],
    ["q", "--context", "a", "--help"],
    ["q"],  # no --context
    ["--context", "a"],  # no query
    ["q", "r", "--context", "a"],
    ["q", "--context", "a", "--nope"],
    ["q", "--context", "a", "-x"],
    ["q", "--context", "a", "--", "-r"],
    ["q", "--context", ""],
    ["q", "--context", "a", "--deadline", "1e3"],
    ["q", "--context", "a", "--deadline", "-5"],
    ["q", "--context", "a", "--deadline", "nan"],
    ["q", "--context", "a", "--max-depth", "010"],
    ["q", "--context", "a", "--max-depth", "1_0"],
    ["q", "--context", "a", "--max-depth", "2.0"],
    ["q", "--context", "a", "--tenant", "t", "--tenant", "u"],
    ["q", "--context", "a", "--worker", "--no-worker"],
    ["q", "--context", "a", "--quiet=yes"],
    ["q", "--context", "a", "--no-quiet"],  # a flag declared alone has no --no- form
    ["q", "--context", "a", "--local-worker"],  # declared as --worker
    ["q", "--context", "a", "--model", "-m"],
    ["q", "--context", "a", "--model"],
]


def _typer_kwargs(argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """What Typer passes to ``rlm run`` for ``argv``: its declarations on a recorder."""
    seen: dict[str, Any] = {}

    @functools.wraps(run_cmds.run)
    def record(**kwargs: Any) -> None:
        seen.update(kwargs)

    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("run")(record)
    result = CliRunner().invoke(app, ["run", *argv], env=env)
    assert result.exit_code == 0, result.output
    return seen


def _same(quick: dict[str, Any] | None, typer_kwargs: dict[str, Any]) -> None:
    assert quick is not None
    # repr: 30 == 30.0 and ("a",) == ["a"] would hide a value of another type
    assert {k: repr(v) for k, v in quick.items()} == {k: repr(v) for k, v in typer_kwargs.items()}


@pytest.mark.parametrize("argv", PLAIN)
def test_plain_command_lines_get_what_typer_passes(argv: list[str]) -> None:
    _same(quick_args.parse(run_cmds.run, argv), _typer_kwargs(argv))


def test_an_option_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["q", "--context", "a"]
    for value in ("5", "0.25", ""):  # an empty variable is not set, for Click
        monkeypatch.setenv("RLM_PROGRESS_EVERY", value)
        _same(quick_args.parse(run_cmds.run, argv), _typer_kwargs(argv, {"RLM_PROGRESS_EVERY": value}))
    monkeypatch.setenv("RLM_PROGRESS_EVERY", "soon")
    assert quick_args.parse(run_cmds.run, argv) is None


@pytest.mark.parametrize("argv", LEFT_TO_TYPER)
def test_anything_else_is_left_to_typer(argv: list[str]) -> None:
    assert quick_args.parse(run_cmds.run, argv) is None


def test_a_command_it_cannot_read_is_left_to_typer() -> None:
    def odd(n: int = 1) -> None: ...  # no Typer declaration

    def called_back(
        name: Annotated[str, typer.Option(callback=lambda v: v)] = "x",
    ) -> None: ...

    assert quick_args.parse(odd, []) is None
    assert quick_args.parse(called_back, []) is None


def _rlm(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "RLM_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-X", "importtime", str(RLM), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_rlm_run_skips_typers_conversion_and_keeps_its_errors(tmp_path: Path) -> None:
    """Through ``rlm``: a plain command line never imports Pydantic (Typer's converter) and still ends
    with the command's one ``error:`` line; one Typer has to read still gets Typer's usage error."""
    missing = str(tmp_path / "missing.txt")
    quick = _rlm("run", "q", "--context", missing, tmp_path=tmp_path)
    lines = [line for line in quick.stderr.splitlines() if not line.startswith("import time:")]
    assert quick.returncode == 1, quick.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: context {missing} is not a readable file"), lines
    assert not re.search(r"\|\s+pydantic$", quick.stderr, re.M)

    typed = _rlm("run", "q", "--context", missing, "--max-depth", "x", tmp_path=tmp_path)
    assert typed.returncode == 1, typed.stderr
    assert re.search(r"\|\s+pydantic$", typed.stderr, re.M)
    lines = [line for line in typed.stderr.splitlines() if not line.startswith("import time:")]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: Invalid value for '--max-depth'"), lines
    assert lines[0].endswith("; see `rlm run --help`"), lines
