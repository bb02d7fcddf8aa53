"""Logging: structlog to stderr, JSON when stderr is not a terminal, events bound to run/node/tenant.

``configure_logging(level)`` is called once by every entry point (CLI commands, the worker). Inside an
activity, ``bind_node(...)`` puts the node's run id, node id and tenant into structlog's context
variables, so every event the activity (and the code it calls) logs carries them without repeating
them at each call. Activities run in their own asyncio task or worker thread with a copied context,
so a binding never leaks from one activity into another.

Records of the stdlib ``logging`` module (Temporal's core, forwarded by ``connection.temporal_runtime``,
litellm, httpx, ...) and Python warnings go to the same stream through structlog's ``ProcessorFormatter``:
stdout carries results only. ``results_stdout()`` guards a command's work against libraries that print
to stdout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import TextIO

import structlog

from orchestrator.errors import RlmError

LEVELS = ("debug", "info", "warning", "error")

# The stdlib logger Temporal's core (Rust) logs are forwarded to; RLM_TEMPORAL_LOG_LEVEL sets its level.
CORE_LOGGER = "temporalio.core"
# litellm's own handler writes records below WARNING to stdout, the rest to stderr: its loggers are held
# at WARNING and keep to that handler (propagating would print each of their lines twice).
_STDOUT_WRITING_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")


class LogLevelError(RlmError):
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
    one JSON object per line. Other libraries' stdlib records go the same way at warning and above
    (every level with ``debug``); Temporal's core at ``RLM_TEMPORAL_LOG_LEVEL`` (default warning)."""
    out = stream if stream is not None else sys.stderr
    level = _env_level(env_var, default)
    core_level = _env_level("RLM_TEMPORAL_LOG_LEVEL", "warning")
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if out.isatty() else structlog.processors.JSONRenderer()
    )
    sink: TextIO = out if stream is not None else _CurrentStderr()  # type: ignore[assignment]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sink),
        cache_logger_on_first_use=False,
    )
    _route_stdlib(sink, renderer, level, core_level)


class LocalModelCalls:
    """The workflow runs (Temporal run ids) in this process whose workflow task holds a model call.

    A local activity runs inside its workflow's task: a ``Leaf``'s call, or an ``RLMNode``'s inline
    leaves. A call past 5 s, and every keep-alive of a longer one, makes the core warn that the task took
    more than 5 s (TMPRL1104); for these tasks that is how the call works, not a starved worker."""

    # After the last call ends its task still holds the local retries' backoffs (up to 5 s) and the
    # activation that completes it, late on a busy worker.
    GRACE_S = 30.0

    def __init__(self) -> None:
        # The activities run on the event loop, the core's records arrive on the bridge's thread.
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        self._ended: dict[str, float] = {}  # oldest first: a run is moved to the end when it ends again

    @contextlib.contextmanager
    def held(self, run_id: str | None) -> Iterator[None]:
        if run_id is None:
            yield
            return
        with self._lock:
            self._in_flight[run_id] += 1
        try:
            yield
        finally:
            now = time.monotonic()
            with self._lock:
                self._in_flight[run_id] -= 1
                if self._in_flight[run_id] <= 0:
                    del self._in_flight[run_id]
                self._ended.pop(run_id, None)
                self._ended[run_id] = now
                oldest, ended = next(iter(self._ended.items()))
                while now - ended > self.GRACE_S:  # never the run just put last
                    del self._ended[oldest]
                    oldest, ended = next(iter(self._ended.items()))

    def expected(self, run_id: str) -> bool:
        """Whether a long workflow task of ``run_id`` is explained by a model call it held."""
        with self._lock:
            if run_id in self._in_flight:
                return True
            ended = self._ended.get(run_id)
            return ended is not None and time.monotonic() - ended <= self.GRACE_S


LOCAL_MODEL_CALLS = LocalModelCalls()

# The core's warning names the task's workflow run first: "[TMPRL1104] <run id>:<event id>:<attempt> ...".
_LONG_TASK = re.compile(r"\[TMPRL1104\] ([^:\s]+):")


class _ExpectedLongTasks(logging.Filter):
    """Holds the core's "workflow task duration exceeded 5 seconds" warning at debug level for a task
    that held a model call (``LOCAL_MODEL_CALLS``): one line per leaf of a fan-out on a slow model says
    nothing an operator can act on. Any other task past 5 s still warns: it means a starved worker."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        found = _LONG_TASK.search(record.getMessage())
        if found is None or not LOCAL_MODEL_CALLS.expected(found.group(1)):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(CORE_LOGGER).isEnabledFor(logging.DEBUG)


class _StdlibHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure_logging`` installs on the root logger (replaced, not added, on a re-run)."""


def _route_stdlib(sink: TextIO, renderer: structlog.typing.Processor, level: int, core_level: int) -> None:
    handler = _StdlibHandler(sink)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StdlibHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Python warnings (the SDK's about a workflow that ended with an Update running, a library's
    # deprecation) go the same way, one JSON line each, instead of raw text among the JSON lines.
    logging.captureWarnings(True)
    # Libraries' info lines (one per HTTP request, per worker poll) would drown the engine's events.
    root.setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
    core = logging.getLogger(CORE_LOGGER)
    core.setLevel(core_level)
    for held in [f for f in core.filters if isinstance(f, _ExpectedLongTasks)]:
        core.removeFilter(held)
    core.addFilter(_ExpectedLongTasks())
    for name in _STDOUT_WRITING_LOGGERS:
        library = logging.getLogger(name)
        library.setLevel(max(root.level, logging.WARNING))
        library.propagate = False


def _env_level(env_var: str, default: str) -> int:
    name = os.environ.get(env_var) or default
    try:
        return parse_level(name)
    except LogLevelError:
        raise LogLevelError(f"{env_var}={name!r} is not a level; use one of {', '.join(LEVELS)}") from None


@contextlib.contextmanager
def results_stdout() -> Iterator[TextIO]:
    """While the body runs, whatever is written to stdout (a library's ``print``, a native library or a
    child process writing to file descriptor 1) goes to stderr instead; the stream yielded writes to the
    real stdout, for the command's result. Use it only inside the ``with`` block."""
    real = sys.stdout
    real.flush()
    fd = _fileno(real)
    if fd is None:  # an in-process caller's buffer (a test's CliRunner): only Python writes can move
        sys.stdout = sys.stderr
        try:
            yield real
        finally:
            sys.stdout = real
        return
    saved = os.dup(fd)
    result = open(saved, "w", encoding=real.encoding, errors=real.errors, closefd=False)  # noqa: SIM115
    sys.stderr.flush()
    os.dup2(_fileno(sys.stderr) or 2, fd)
    sys.stdout = sys.stderr
    try:
        yield result
    finally:
        sys.stdout = real
        with contextlib.suppress(OSError, ValueError):
            result.flush()
            sys.stderr.flush()
        os.dup2(saved, fd)
        result.close()
        os.close(saved)


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None


def bind_node(run_id: str, node_id: str, tenant: str) -> None:
    """Bind the node's ids for every later event in this activity's context."""
    structlog.contextvars.bind_contextvars(run_id=run_id, node_id=node_id, tenant=tenant)
