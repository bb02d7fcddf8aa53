"""``--json`` output: one JSON document on stdout; dataclasses become objects, money stays exact text.
Also the quiet exit when stdout's reader went away."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import signal
import sys
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any

import typer
from rich.console import Console

# Typer 0.29 (pinned) parses with its own copy of Click, whose classes only it exports; the `click`
# package's are other classes, never raised here.
from typer._click import Context
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

# The ``--json`` switch of a command that prints one document (commands whose JSON is a list or a
# transcript say so in their own help).
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]


def _default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Decimal):
        # Loaded by then: only commands that read the store print amounts.
        from orchestrator.store import format_usd

        return format_usd(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def emit_json(value: Any) -> None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    typer.echo(json.dumps(value, default=_default, sort_keys=True))


# What a shell reports for a tool whose reader went away (killed by SIGPIPE): 128 + 13.
PIPE_CLOSED = 128 + signal.SIGPIPE


def reader_gone() -> int:
    """Python's recipe for a closed pipe: point stdout and stderr at /dev/null, so that nothing more (nor
    the interpreter's last flush) fails on the gone reader, and exit with ``PIPE_CLOSED``."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)
    return PIPE_CLOSED


class PipeSafeGroup(TyperGroup):
    """The top command group: a write to a closed stdout (``rlm tree RUN | head -1``) ends the command
    quietly with ``PIPE_CLOSED``, as Unix tools end, instead of with an ``error:`` line or a traceback.

    It also turns Click's usage errors (an unknown option, a missing argument, a value Typer cannot
    convert) into the one ``error:`` line and exit code 1 of every other bad input: Click would print a
    boxed message and exit 2, which `rlm wait` and `rlm submit` use for "the run failed". The root's own
    options are parsed in ``make_context``, every sub-command's inside ``invoke``."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Context | None = None, **extra: Any
    ) -> Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except UsageError as exc:
            raise usage_failure(exc) from None

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # Every context was left on the way here; no normal interpreter exit (see run_cmds._exit_now).
            os._exit(reader_gone())
        except UsageError as exc:
            raise usage_failure(exc) from None


def usage_failure(exc: UsageError) -> typer.Exit:
    """``error: WHAT CLICK SAID; see `rlm CMD --help``` (the caller raises the returned exit, code 1).

    A group called without a sub-command (``rlm db``) has already shown its help: only the exit code
    changes there."""
    if isinstance(exc, NoArgsIsHelpError):
        return typer.Exit(1)
    from orchestrator.cli.common import fail  # common imports this module

    said = " ".join(line.strip() for line in exc.format_message().splitlines() if line.strip())
    command = exc.ctx.command_path if exc.ctx is not None else "rlm"
    return fail(f"{said.rstrip('.')}; see `{command} --help`")


class PipeSafeConsole(Console):
    """Rich's console leaves with exit code 1 on a closed stdout; this one ends like the other commands."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
