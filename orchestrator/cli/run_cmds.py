"""``rlm run``, ``rlm status``, ``rlm tree`` (worker and dev: ``server_cmds``; controls: ``control_cmds``).

With no ``TEMPORAL_ADDRESS`` the commands that need Temporal use the server of the ``rlm dev`` serving
their data directory, else start the embedded dev server (SQLite file in the data directory, Web UI,
custom search attributes) and stop it on exit; one data directory never gets two servers
(``orchestrator.devlock``). Every bad input ends with one ``error: ...`` line and exit code 1. stdout
carries the answer alone; everything else goes to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time
import urllib.parse
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, NoReturn, TextIO

import typer
from rich.text import Text
from rich.tree import Tree
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError

from orchestrator.cli.output import PipeSafeConsole, emit_json, reader_gone
from orchestrator.client import (
    RunError,
    RunRequest,
    checked_input,
    dev_holder,
    run_summary,
    run_tree,
    start_run,
    temporal_target,
)
from orchestrator.connection import TemporalTarget, connect
from orchestrator.devlock import DataDirBusy
from orchestrator.devstack import DevServerError
from orchestrator.jobs import RECONNECT_S, ExitCode, LostContact, Patience
from orchestrator.logs import results_stdout
from orchestrator.settings import Settings, SettingsError, load_settings
from orchestrator.store import (
    StoreError,
    format_usd,
    list_nodes,
    make_engine,
    make_session_factory,
    prepare_schema,
)
from orchestrator.workflows.types import LEAF_MODES, Limits

LEAF_MODE_HELP = (
    "llm_query sub-calls as their own Leaf workflows ('workflow') or as local activities of their "
    "parent ('inline': about a third of the cost per sub-call); default RLM_LEAF_MODE or 'workflow'."
)

RECONNECT_HELP = (
    "Seconds to keep retrying while Temporal or the store does not answer; then exit 7 (the run goes on)."
)

console = PipeSafeConsole()


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (StoreError, SettingsError, RunError, DevServerError, DataDirBusy, ValueError) as exc:
        raise _fail(_first_line(exc)) from None
    except DBAPIError as exc:
        raise _fail(f"database error: {_first_line(exc.orig or exc)}; check RLM_DATABASE_URL") from None
    except RPCError as exc:
        raise _fail(f"Temporal error: {exc.message}; check TEMPORAL_ADDRESS or run `rlm dev`") from None
    except BrokenPipeError:
        raise  # stdout's reader went away: the top group ends the command quietly
    except OSError as exc:
        raise _fail(f"{exc.strerror or exc}: {exc.filename or ''}") from None


@contextlib.contextmanager
def _temporal_errors() -> Iterator[None]:
    """``_errors()``, leaving through ``_exit_now``: once a Temporal client existed, a normal interpreter
    exit can abort the process (see ``_exit_now``), which would turn exit code 1 into a crash."""
    try:
        with _errors():
            yield
    except typer.Exit as exc:
        _exit_now(exc.exit_code)


def lost_contact(exc: LostContact) -> int:
    typer.echo(f"error: {exc}", err=True)
    return int(ExitCode.LOST_CONTACT)


def check_reconnect(reconnect_for: float) -> float:
    if not 0 <= reconnect_for <= 86_400:  # also refuses nan
        raise RunError(f"--reconnect-for {reconnect_for:g} must be from 0 to 86400 seconds")
    return reconnect_for


def _store(settings: Settings) -> tuple[Engine, sessionmaker[Session]]:
    engine = make_engine(settings.database_url)
    prepare_schema(engine)
    return engine, make_session_factory(engine)


def ui_link(settings: Settings, target: TemporalTarget, workflow_id: str) -> str | None:
    base = target.ui_url or settings.temporal_ui_url
    if not base:
        return None
    wid = urllib.parse.quote(workflow_id, safe="")
    return f"{base}/namespaces/{target.namespace}/workflows/{wid}"


def _usd(raw: str | None, what: str) -> Decimal | None:
    if raw is None:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise RunError(f"{what} {raw!r} is not a number; give USD like 0.50") from None
    if not value.is_finite() or value < 0:
        raise RunError(f"{what} {raw!r} must be a non-negative amount of USD")
    return value


def _limits(
    max_depth: int,
    max_iterations: int,
    max_subcalls: int,
    concurrency: int,
    max_tokens: int,
    leaf_mode: str,
    heartbeat_timeout_s: float,
) -> Limits:
    for name, value, low in (
        ("--max-depth", max_depth, 0),
        ("--max-iterations", max_iterations, 1),
        ("--max-subcalls", max_subcalls, 0),
        ("--concurrency", concurrency, 1),
        ("--max-tokens", max_tokens, 1),
    ):
        if value < low:
            raise RunError(f"{name} {value} must be >= {low}")
    if leaf_mode not in LEAF_MODES:
        raise RunError(f"--leaf-mode {leaf_mode!r} is not known; use {' or '.join(LEAF_MODES)}")
    return Limits(
        max_depth=max_depth,
        max_iterations=max_iterations,
        max_subcalls=max_subcalls,
        max_concurrency=concurrency,
        max_tokens=max_tokens,
        leaf_mode=leaf_mode,
        heartbeat_timeout_s=heartbeat_timeout_s,
    )


def run_request(
    settings: Settings,
    query: str,
    context: Path,
    *,
    tenant: str,
    budget_usd: str | None,
    model: str | None,
    sub_model: str | None,
    deadline: float,
    run_id: str | None,
    max_depth: int,
    max_iterations: int,
    max_subcalls: int,
    concurrency: int,
    max_tokens: int,
    leaf_mode: str | None,
) -> RunRequest:
    """The run `rlm run`, `rlm submit` and `rlm schedule create` ask for, with the settings' defaults."""
    limits = _limits(
        max_depth,
        max_iterations,
        max_subcalls,
        concurrency,
        max_tokens,
        leaf_mode or settings.leaf_mode,
        settings.heartbeat_timeout_s,
    )
    request = RunRequest(
        query=query,
        context_path=context,
        tenant=tenant,
        budget_usd=_usd(budget_usd, "--budget-usd"),
        model=model or settings.model,
        sub_model=sub_model or settings.sub_model,
        deadline_s=deadline,
        run_id=run_id,
        limits=limits,
    )
    # Bad input ends here, before a server is started or contacted; storing the run checks it again.
    checked_input(request)
    return request


def _exit_now(code: int) -> NoReturn:
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


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("status")(status)
    app.command("tree")(tree)


# --- rlm run -----------------------------------------------------------------------------------


def run(
    query: Annotated[str, typer.Argument(help="The question to answer over the context.")],
    context: Annotated[Path, typer.Option("--context", help="A text file (or .json) holding the context.")],
    tenant: Annotated[str, typer.Option(help="Tenant whose budget pays for the run.")] = "default",
    budget_usd: Annotated[str | None, typer.Option("--budget-usd", help="The run's own USD budget.")] = None,
    max_depth: Annotated[int, typer.Option(help="How deep rlm_query may recurse.")] = 1,
    model: Annotated[str | None, typer.Option(help="Root model (litellm string); default RLM_MODEL.")] = None,
    sub_model: Annotated[str | None, typer.Option(help="Model of sub-calls; default RLM_SUB_MODEL.")] = None,
    deadline: Annotated[float, typer.Option(help="Seconds the whole tree may take.")] = 3600.0,
    run_id: Annotated[str | None, typer.Option(help="Run id (default: generated).")] = None,
    detach: Annotated[
        bool, typer.Option(help="Start the run and return (needs TEMPORAL_ADDRESS or a running `rlm dev`).")
    ] = False,
    max_iterations: Annotated[int, typer.Option(help="Iterations per node.")] = 30,
    max_subcalls: Annotated[int, typer.Option(help="Sub-calls per node.")] = 500,
    concurrency: Annotated[int, typer.Option(help="Concurrent sub-calls per node.")] = 16,
    max_tokens: Annotated[int, typer.Option(help="Completion tokens per model call.")] = 4096,
    leaf_mode: Annotated[str | None, typer.Option(help=LEAF_MODE_HELP)] = None,
    local_worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Run a worker in this process.")
    ] = True,
    reconnect_for: Annotated[float, typer.Option(help=RECONNECT_HELP)] = RECONNECT_S,
) -> None:
    """Answer QUERY over the context with a recursion tree of durable workflows.

    stdout carries the answer alone; the summary (status, cost, tokens, nodes, wall time, Web UI link)
    goes to stderr. Exit: 0 completed, 1 not completed or bad input, 7 lost contact (the run goes on)."""
    with _temporal_errors():
        settings = load_settings()
        check_reconnect(reconnect_for)
        if detach and settings.embedded_temporal and dev_holder(settings) is None:
            raise RunError(
                "--detach needs a server that outlives this command: set TEMPORAL_ADDRESS (or run `rlm dev`)"
            )
        request = run_request(
            settings,
            query,
            context,
            tenant=tenant,
            budget_usd=budget_usd,
            model=model,
            sub_model=sub_model,
            deadline=deadline,
            run_id=run_id,
            max_depth=max_depth,
            max_iterations=max_iterations,
            max_subcalls=max_subcalls,
            concurrency=concurrency,
            max_tokens=max_tokens,
            leaf_mode=leaf_mode,
        )
        engine, sessions = _store(settings)
        try:
            # The worker runs in this process: whatever a library prints goes to stderr, the answer to stdout.
            with results_stdout() as out:
                code = asyncio.run(
                    _run(settings, sessions, request, detach, local_worker and not detach, reconnect_for, out)
                )
        except LostContact as exc:
            code = lost_contact(exc)
        except asyncio.CancelledError:
            typer.echo("stopped by SIGTERM; the run continues on the next `rlm dev` / worker", err=True)
            code = 128 + signal.SIGTERM
        finally:
            engine.dispose()
    _exit_now(code)


async def _run(
    settings: Settings,
    sessions: sessionmaker[Session],
    request: RunRequest,
    detach: bool,
    local_worker: bool,
    reconnect_s: float,
    out: TextIO,
) -> int:
    started = time.monotonic()
    # SIGTERM cancels like Ctrl-C, so the worker, its sandboxes and the embedded server are stopped.
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with temporal_target(settings) as target:
        client = await connect(target)
        async with contextlib.AsyncExitStack() as stack:
            if local_worker:
                # Imported here: the worker loads litellm (seconds), which commands without one never need.
                from orchestrator.worker import running_worker

                await stack.enter_async_context(running_worker(client, settings))
            handle = await start_run(client, sessions, request, settings.task_queue)
            run_id = handle.id.rsplit("/", 1)[0]
            link = ui_link(settings, target, handle.id)
            typer.echo(f"run {run_id} started" + (f"; watch it at {link}" if link else ""), err=True)
            if detach:
                typer.echo(run_id, file=out)
                return 0
            patience = Patience(run_id, reconnect_s)
            try:
                # A fresh handle per attempt: after a dropped connection the wait resumes where it was.
                await patience.call(
                    f"Temporal at {target.address}", lambda: client.get_workflow_handle(handle.id).result()
                )
            except WorkflowFailureError as exc:
                typer.echo(f"error: the root workflow failed: {_first_line(exc.cause or exc)}", err=True)
        summary = await patience.call("the store", lambda: asyncio.to_thread(run_summary, sessions, run_id))
    wall = time.monotonic() - started
    typer.echo(summary.answer if summary.answer is not None else "(no answer)", file=out)
    typer.echo(
        f"status {summary.status} | cost ${format_usd(summary.cost)} | tokens {summary.prompt_tokens} in / "
        f"{summary.completion_tokens} out | nodes {summary.nodes} | wall {wall:.1f} s"
        + (f" | {link}" if link else ""),
        err=True,
    )
    if summary.error:
        typer.echo(f"reason: {summary.error}", err=True)
    return 0 if summary.status == "completed" else 1


# --- rlm status / tree -------------------------------------------------------------------------


def status(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")] = False,
) -> None:
    """Show a run's status, cost, tokens and node count (from the store)."""
    with _errors():
        settings = load_settings()
        engine, sessions = _store(settings)
        try:
            s = run_summary(sessions, run_id)
            with sessions() as session:
                paused = [n.node_id for n in list_nodes(session, run_id) if n.status == "paused_budget"]
        finally:
            engine.dispose()
    if as_json:
        emit_json({**dataclasses.asdict(s), "paused_nodes": paused})
        return
    typer.echo(f"run {s.run_id}: {s.status}")
    typer.echo(
        f"  cost ${format_usd(s.cost)} | tokens {s.prompt_tokens} in / {s.completion_tokens} out"
        f" | nodes {s.nodes}"
    )
    if s.wall_s is not None:
        typer.echo(f"  wall {s.wall_s:.1f} s")
    if paused:
        typer.echo(f"  paused for budget: {', '.join(paused)} (raise the budget, then `rlm resume {run_id}`)")
    if s.error:
        typer.echo(f"  reason: {s.error}")
    if s.answer is not None:
        typer.echo(f"  answer: {s.answer}")


def tree(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the nodes as one JSON list (tree order) instead.")
    ] = False,
) -> None:
    """Print the recursion tree: each node's status, iterations, cost and answer preview."""
    with _errors():
        settings = load_settings()
        engine, sessions = _store(settings)
        try:
            rows = run_tree(sessions, run_id)
        finally:
            engine.dispose()
    if as_json:
        emit_json(rows)
        return
    nodes: dict[str, Tree] = {}
    top = Tree(Text(f"run {run_id}"))
    for row in rows:
        label = f"{row.node_id.rsplit('/', 1)[-1]} [{row.kind}] {row.status}"
        if row.kind != "leaf":
            label += f" | iter {row.iterations}"
        label += f" | ${format_usd(row.cost)}"
        if row.answer_preview is not None:
            label += f" | {row.answer_preview!r}"
        if row.error:
            label += f" | {row.error[:80]}"
        parent = nodes.get(row.parent_id or "", top)
        nodes[row.node_id] = parent.add(Text(label))
    console.print(top, highlight=False, soft_wrap=True)
