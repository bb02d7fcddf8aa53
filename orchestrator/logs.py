"""Logging: structlog to stderr, JSON when stderr is not a terminal, events bound to run/node/tenant.

``configure_logging(level)`` is called once by every entry point (CLI commands, the worker). Inside an
activity, ``bind_node(...)`` puts the node's run id, node id and tenant into structlog's context
variables, so every event the activity (and the code it calls) logs carries them without repeating
them at each call. Activities run in their own asyncio task or worker thread with a copied context,
so a binding never leaks from one activity into another.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

import structlog

LEVELS = ("debug", "info", "warning", "error")


class LogLevelError(ValueError):
    """A log level that is not one of ``LEVELS``."""


def parse_level(name: str) -> int:
    level = logging.getLevelNamesMapping().get(name.upper())
    if level is None or name.lower() not in LEVELS:
        raise LogLevelError(f"log level {name!r} is not known; use one of {', '.join(LEVELS)}")
    return level


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write.

    A command run in-process (a test's CliRunner, an embedding application) swaps ``sys.stderr`` for a
    buffer and closes it afterwards; holding that object would make every later log call raise, and an
    activity whose log call raises fails with that error instead of its own (a non-retryable model error
    would be retried)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(default: str, *, stream: TextIO | None = None, env_var: str = "RLM_LOG_LEVEL") -> None:
    """Log to ``stream`` (stderr: stdout carries answers and --json output) at ``RLM_LOG_LEVEL`` or
    ``default``. A terminal gets the console renderer; anything else (a file, a pipe, a log shipper)
    one JSON object per line."""
    out = stream if stream is not None else sys.stderr
    name = os.environ.get(env_var) or default
    try:
        level = parse_level(name)
    except LogLevelError:
        raise LogLevelError(f"{env_var}={name!r} is not a level; use one of {', '.join(LEVELS)}") from None
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if out.isatty() else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(out if stream is not None else _CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def bind_node(run_id: str, node_id: str, tenant: str) -> None:
    """Bind the node's ids for every later event in this activity's context."""
    structlog.contextvars.bind_contextvars(run_id=run_id, node_id=node_id, tenant=tenant)
