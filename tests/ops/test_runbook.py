"""Every `rlm` command line in ops/RUNBOOK.md names a command and options that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app

RUNBOOK = Path(__file__).resolve().parents[2] / "ops" / "RUNBOOK.md"


def command_lines() -> list[str]:
    """Lines of the runbook's code blocks that run `rlm` (the alias included), comments removed."""
    lines: list[str] = []
    in_block = False
    for raw in RUNBOOK.read_text().splitlines():
        if raw.startswith("```"):
            in_block = not in_block
            continue
        line = raw.split("  #", 1)[0].strip()
        if in_block and line.startswith("rlm "):
            lines.append(line)
    return lines


def resolve(words: list[str]) -> tuple[list[str], str]:
    """The longest prefix of ``words`` that is a command, and its help text."""
    runner = CliRunner()
    found: tuple[list[str], str] | None = None
    for end in range(1, min(len(words), 3) + 1):
        prefix = words[:end]
        if any(w.startswith("-") for w in prefix):
            break
        result = runner.invoke(app, [*prefix, "--help"])
        if result.exit_code != 0:
            break
        found = (prefix, result.output)
    assert found is not None, f"`rlm {words[0]}` is not a command"
    return found


def test_the_runbook_shows_commands() -> None:
    assert len(command_lines()) >= 25


@pytest.mark.parametrize("line", command_lines())
def test_runbook_command_exists(line: str) -> None:
    words = shlex.split(line.replace("$(", "(").replace("; ", " ; "))[1:]
    words = words[: words.index(";")] if ";" in words else words
    prefix, help_text = resolve(words)
    # Stopping at a group means the next word is not one of its commands.
    assert not re.search(r"Usage: \S+ .*COMMAND \[ARGS\]", help_text), f"{line}: no such command"
    for option in re.findall(r"(?<!\S)(--[a-z][a-z-]*)", " ".join(words[len(prefix) :])):
        assert option in help_text, f"{line}: `rlm {' '.join(prefix)}` has no option {option}"
