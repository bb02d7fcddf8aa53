"""``rlm --help`` lists every command with a one-line summary: the command panel keeps a summary's line
breaks, so a summary that runs over lines is cut mid-sentence there."""

from __future__ import annotations

from typing import Any

import typer.main

from orchestrator.cli import app

SUMMARY_CHARS = 100


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        return [(" ".join(path), command)]
    found = [(" ".join(path), command)] if path else []
    for name, sub in subcommands.items():
        found += _commands(sub, (*path, name))
    return found


def test_every_command_opens_its_help_with_a_one_line_summary() -> None:
    commands = _commands(typer.main.get_command(app))
    assert {"run", "wait", "worker", "dev", "show", "export", "watch", "model serve"} <= {
        n for n, _ in commands
    }
    long = {}
    for name, command in commands:
        summary = (command.help or "").strip().split("\n\n")[0]
        if not summary or "\n" in summary or len(summary) > SUMMARY_CHARS:
            long[name] = summary
    assert long == {}
