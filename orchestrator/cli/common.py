"""Plumbing shared by every ``rlm`` command: the one-line error exit, the store, the hard exit.

Only ``RlmError`` (bad input or an unreachable dependency, said in one line) and the database, Temporal
and file-system failures an operator can fix become ``error: ...`` and exit code 1; anything else is a
bug and keeps its traceback.

Imports the engine (store, Temporal) only inside the functions that use it: ``rlm --help`` and
``rlm version`` must not pay for it (the CLI import convention, docs/operations.md).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, NoReturn, overload

import typer

from orchestrator.cli.output import reader_gone
from orchestrator.errors import RlmError
from orchestrator.ids import BadId, check_run_id, check_target

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker
    from temporalio.client import Client

    from orchestrator.connection import TemporalTarget
    from orchestrator.runs import LostContact
    from orchestrator.settings import Settings


# How long `rlm run`'s own worker stays for the workflows of its ended run still closing.
OWN_WORKER_CLOSE_S = 30.0


def fail(message: str) -> typer.Exit:
    """Print ``error: MESSAGE`` to stderr; the caller raises the returned exit (code 1)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _fixable(exc: Exception) -> str | None:
    """The one line for a failure an operator can fix, else ``None`` (a bug: keep the traceback).

    The database and Temporal error classes are looked up among the loaded modules: an exception of
    theirs can only exist once its library was imported, and importing them here would cost every
    command the engine's import time."""
    if isinstance(exc, RlmError):
        return first_line(exc)
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError):
        return f"database error: {first_line(exc.orig or exc)}; check RLM_DATABASE_URL"
    service = sys.modules.get("temporalio.service")
    if service is not None and isinstance(exc, service.RPCError):
        return f"Temporal error: {exc.message}; check TEMPORAL_ADDRESS or run `rlm dev`"
    if isinstance(exc, BrokenPipeError):
        return None  # stdout's reader went away: the top group ends the command quietly
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename or ''}"
    return None


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        message = _fixable(exc)
        if message is None:
            raise
        raise fail(message) from None


@contextlib.contextmanager
def temporal_errors() -> Iterator[None]:
    """``cli_errors()``, leaving through ``exit_now``: once a Temporal client existed, a normal interpreter
    exit can abort the process (see ``exit_now``), which would turn exit code 1 into a crash."""
    try:
        with cli_errors():
            yield
    except typer.Exit as exc:
        exit_now(exc.exit_code)


def exit_now(code: int) -> NoReturn:
    """Exit without interpreter finalisation once a Temporal client existed in this process.

    The SDK's native runtime keeps threads that may still touch the GIL while CPython finalises,
    which intermittently aborts the process (SIGABRT) after the work is done; everything of ours is
    closed by now, so flush and leave."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = reader_gone()
    os._exit(code)


def open_store(settings: Settings) -> tuple[Engine, sessionmaker[Session]]:
    """The store's engine (the caller disposes of it) and sessions, its schema checked first."""
    import structlog

    from orchestrator.store import make_engine, make_session_factory, prepare_schema

    started = time.monotonic()
    engine = make_engine(settings.database_url)
    prepare_schema(engine)
    structlog.get_logger(__name__).info("store.checked", ms=round((time.monotonic() - started) * 1000))
    return engine, make_session_factory(engine)


def _checked_id(check: Callable[[str], str], value: str | None) -> str | None:
    try:
        return None if value is None else check(value)
    except BadId as exc:
        raise typer.BadParameter(str(exc)) from None


def run_id_param(value: str | None) -> str | None:
    """The Typer callback of every parameter that names a run: a malformed id is refused as such while
    the command line is parsed (one ``error:`` line), instead of being looked up and called missing."""
    return _checked_id(check_run_id, value)


def target_param(value: str | None) -> str | None:
    """``run_id_param`` for a parameter that takes a run id or a node id (``RUN/0.3.1``)."""
    return _checked_id(check_target, value)


RunIdArg = Annotated[str, typer.Argument(help="The run id.", callback=run_id_param)]
TargetArg = Annotated[
    str, typer.Argument(help="A run id, or a node id like RUN/0.3.1.", callback=target_param)
]


@overload
def usd(raw: str, what: str, *, positive: bool = False) -> Decimal: ...
@overload
def usd(raw: None, what: str, *, positive: bool = False) -> None: ...
@overload
def usd(raw: str | None, what: str, *, positive: bool = False) -> Decimal | None: ...
def usd(raw: str | None, what: str, *, positive: bool = False) -> Decimal | None:
    """``raw`` as USD (``store.money.parse_usd``); ``positive``: more than 0, else 0 or more."""
    if raw is None:
        return None
    from orchestrator.store.money import parse_usd

    return parse_usd(raw, what, positive=positive)


# The longest duration an option takes (--since, --older-than, --idle): longer ones reach back past
# every date the store can hold, and past what datetime arithmetic represents (an OverflowError).
MAX_DURATION_S = 100 * 365 * 86_400


def duration_s(text: str, option: str) -> float:
    """The seconds of ``option``'s duration (90s, 10m, 2h, 30d, 2w), at most ``MAX_DURATION_S``."""
    from orchestrator.durations import parse_duration
    from orchestrator.runs import RunError

    seconds = parse_duration(text)  # a DurationError is an RlmError: its own one line
    if seconds > MAX_DURATION_S:
        raise RunError(f"{option} {text} is too long; give at most {MAX_DURATION_S // 86_400}d (100 years)")
    return seconds


def check_reconnect(reconnect_for: float) -> float:
    if not 0 <= reconnect_for <= 86_400:  # also refuses nan
        from orchestrator.runs import RunError

        raise RunError(f"--reconnect-for {reconnect_for:g} must be from 0 to 86400 seconds")
    return reconnect_for


def lost_contact(exc: LostContact) -> int:
    from orchestrator.runs import ExitCode

    typer.echo(f"error: {exc}", err=True)
    return int(ExitCode.LOST_CONTACT)


def shared_temporal(settings: Settings) -> TemporalTarget:
    """The Temporal server that outlives this command, for the commands that leave work running."""
    from orchestrator.runs import RunError
    from orchestrator.targets import shared_target

    target = shared_target(settings)
    if target is None:
        raise RunError(
            "set TEMPORAL_ADDRESS to a Temporal server that outlives this command (a cluster), or start "
            "`rlm dev` for this data directory (the embedded server of `rlm run` stops when it ends)"
        )
    return target


def load_worker_modules() -> None:
    """Import what a worker in this process runs on (litellm alone takes seconds). A command that starts
    its own server does it while that server boots (``temporal_target(while_booting=...)``)."""
    # litellm first, from here: on Python 3.11 a loop that calls a function at exactly the boundary of
    # two of the interpreter's frame-stack chunks maps and unmaps a chunk on every call (CPython issue
    # 142183, fixed in 3.13). litellm's import parses a tokenizer with 100,000 such calls; reached
    # through the engine's modules it hit that boundary: 100,000 more mmap/munmap pairs, 0.5-0.8 s.
    from orchestrator.llm import litellm_import_settings

    litellm_import_settings()
    importlib.import_module("litellm")
    importlib.import_module("orchestrator.worker")


async def worker_unless_served(
    stack: contextlib.AsyncExitStack,
    client: Client,
    sessions: sessionmaker[Session],
    settings: Settings,
    wanted: bool | None,
) -> bool:
    """Run a worker in this process for the rest of ``stack``: when ``wanted``, or (None) when no live
    worker of this store already serves the task queue (``orchestrator.runs.serving``). True: it does;
    then ``finish_on_own_worker`` before ``stack`` closes."""
    from orchestrator.runs.serving import serving_worker

    if wanted is None:
        serving = await serving_worker(client, sessions, settings.task_queue)
        if serving is not None:
            typer.echo(f"using worker {serving}, which serves {settings.task_queue}", err=True)
        wanted = serving is None
    if wanted:
        # Imported here: the worker loads litellm (seconds), which commands without one never need.
        from orchestrator.worker import WorkerOptions, running_worker

        # One container started ahead, booting while the first model call runs, and no refill: the
        # worker stops with the run, so a container booted after the first cell would go unused.
        one_shot = WorkerOptions(sandbox_pool=min(1, settings.sandbox_pool), sandbox_pool_refill=False)
        await stack.enter_async_context(running_worker(client, settings, one_shot))
    return wanted


async def finish_on_own_worker(client: Client, sessions: sessionmaker[Session], run_id: str) -> None:
    """Keep this process's worker until every workflow of the ended run has closed: the leaves an abort,
    a failure or the deadline cut short end a moment after the root, and on a queue only this worker
    serves, a workflow left open stays so."""
    from orchestrator.control import Target, until_closed

    left = await until_closed(client, sessions, Target(run_id, None), OWN_WORKER_CLOSE_S)
    if left:
        typer.echo(
            f"warning: {len(left)} workflow(s) of run {run_id} still open after {OWN_WORKER_CLOSE_S:g} s "
            f"({', '.join(left[:3])}{', ...' if len(left) > 3 else ''}): a worker on this task queue "
            "(`rlm dev` or `rlm worker`) ends them",
            err=True,
        )
