"""``rlm session create|add|show|close`` and ``rlm ask``: a tenant's named, multi-turn sessions.

A thin layer over ``orchestrator.sessions``. ``rlm ask`` queues a turn (a run of its own, a child of
the session's workflow) and, unless ``--detach``, waits for it like ``rlm wait`` and prints its answer
on stdout. Heavy modules are imported inside the commands (``rlm --help`` stays fast).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.common import (
    cli_errors,
    exit_now,
    finish_on_own_worker,
    load_worker_modules,
    open_store,
    temporal_errors,
    usd,
    worker_unless_served,
)
from orchestrator.cli.output import JsonOpt, emit_json
from orchestrator.cli.progress_view import (
    PROGRESS_EVERY_S,
    ProgressEvery,
    Quiet,
    progress_every_s,
    showing_progress,
)
from orchestrator.cli.run_options import (
    DEFAULT,
    CompactAt,
    Concurrency,
    ContextWindow,
    LeafModeOpt,
    MaxDepth,
    MaxIter,
    MaxSub,
    MaxTokens,
    RunOptions,
    checked_limits,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from orchestrator.settings import Settings

session_app = typer.Typer(
    no_args_is_help=True, help="Sessions: named conversations whose turns build on each other."
)

Name = Annotated[str, typer.Argument(help="The session's name (letters, digits, '.', '_', ':' or '-').")]
TenantOpt = Annotated[str, typer.Option(help="The tenant the session belongs to.")]
PREVIEW_CHARS = 60


def register(app: typer.Typer) -> None:
    app.add_typer(session_app, name="session")
    app.command("ask")(ask)


@session_app.command("create")
def create(
    name: Name,
    tenant: TenantOpt = "default",
    budget_usd: Annotated[
        str | None, typer.Option("--budget-usd", help="The session's USD budget over all its turns.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Root model of every turn; default RLM_MODEL.")] = None,
    sub_model: Annotated[str | None, typer.Option(help="Model of sub-calls; default RLM_SUB_MODEL.")] = None,
    deadline: Annotated[
        float, typer.Option(help="Seconds each turn's whole tree may take.")
    ] = DEFAULT.deadline,
    max_depth: MaxDepth = DEFAULT.max_depth,
    max_iterations: MaxIter = DEFAULT.max_iterations,
    max_subcalls: MaxSub = DEFAULT.max_subcalls,
    concurrency: Concurrency = DEFAULT.concurrency,
    max_tokens: MaxTokens = DEFAULT.max_tokens,
    compact_at: CompactAt = DEFAULT.compact_at,
    context_window: ContextWindow = DEFAULT.context_window,
    leaf_mode: LeafModeOpt = DEFAULT.leaf_mode,
) -> None:
    """Create a session; its turns (`rlm ask`) see its documents, earlier turns and notes.

    The limits apply to every turn's run, as `rlm run`'s do to a run."""
    from orchestrator.runs import MAX_DEADLINE_S, RunError
    from orchestrator.sessions import create as create_session
    from orchestrator.settings import load_settings

    opts = RunOptions(
        tenant=tenant, max_depth=max_depth, deadline=deadline, max_iterations=max_iterations,
        max_subcalls=max_subcalls, concurrency=concurrency, max_tokens=max_tokens,
        compact_at=compact_at, context_window=context_window, leaf_mode=leaf_mode,
    )  # fmt: skip
    with cli_errors():
        settings = load_settings()
        budget = usd(budget_usd, "--budget-usd")
        limits = checked_limits(opts, settings)
        if not 0 < deadline <= MAX_DEADLINE_S:  # also refuses nan
            raise RunError(f"--deadline {deadline:g} must be more than 0 and at most {MAX_DEADLINE_S:.0f}")
        engine, sessions = open_store(settings)
        try:
            create_session(
                sessions, tenant, name, model=model or settings.model,
                sub_model=sub_model or settings.sub_model, budget=budget, limits=limits, deadline_s=deadline,
            )  # fmt: skip
        finally:
            engine.dispose()
    typer.echo(f"session {name} created for tenant {tenant}", err=True)


@session_app.command("add")
def add(
    name: Name,
    paths: Annotated[list[Path], typer.Argument(help="Files, directories or .jsonl files of documents.")],
    tenant: TenantOpt = "default",
) -> None:
    """Add documents to the session's memory: every later turn's `context` holds them all."""
    from orchestrator.sessions import add as add_documents
    from orchestrator.settings import load_settings

    with cli_errors():
        settings = load_settings()
        engine, sessions = open_store(settings)
        try:
            count = add_documents(sessions, tenant, name, paths)
        finally:
            engine.dispose()
    typer.echo(f"{count} document(s) added to session {name}", err=True)


@session_app.command("show")
def show(name: Name, as_json: JsonOpt = False, tenant: TenantOpt = "default") -> None:
    """Show a session's turns (status, answer, spend), notes, memory size, spend and budget."""
    from orchestrator.sessions import show as show_session
    from orchestrator.settings import load_settings

    with cli_errors():
        engine, sessions = open_store(load_settings())
        try:
            view = show_session(sessions, tenant, name)
        finally:
            engine.dispose()
    if as_json:
        emit_json(view)
        return
    budget = "none" if view["budget_usd"] is None else f"${view['budget_usd']}"
    typer.echo(
        f"session {view['name']} ({view['tenant']}) {view['status']} | spent ${view['spent_usd']} "
        f"of {budget} | {len(view['turns'])} turns | {view['notes']} notes | {view['documents']} documents, "
        f"{view['document_bytes']} bytes"
    )
    for turn in view["turns"]:
        typer.echo(
            f"  {turn['turn']:>4}  {turn['status']:<10} ${turn['spent_usd']:<12} {turn['run_id']}  "
            f"{_preview(turn['answer'] if turn['answer'] is not None else turn['error'])}"
        )


def _preview(text: str | None) -> str:
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= PREVIEW_CHARS else line[: PREVIEW_CHARS - 1] + "…"


@session_app.command("budget")
def budget(
    name: Name,
    amount: Annotated[str, typer.Argument(metavar="USD", help="USD to add to the budget, e.g. 5 or 0.50.")],
    tenant: TenantOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Raise a session's budget by USD (then `rlm resume` a turn its budget paused)."""
    from orchestrator.sessions import raise_budget
    from orchestrator.settings import load_settings
    from orchestrator.store import format_usd

    with cli_errors():
        settings = load_settings()
        added = usd(amount, "USD")
        engine, sessions = open_store(settings)
        try:
            before, after, paused = raise_budget(sessions, tenant, name, added)
        finally:
            engine.dispose()
    if as_json:
        emit_json({"session": name, "tenant": tenant, "before_usd": format_usd(before),
                   "after_usd": format_usd(after), "paused": paused})  # fmt: skip
    else:
        typer.echo(f"session {name}: budget {format_usd(before)} -> {format_usd(after)} USD")
        if paused:
            typer.echo(f"paused nodes to resume: {' '.join(paused)}")


@session_app.command("close")
def close(name: Name, tenant: TenantOpt = "default") -> None:
    """Close a session: it takes no more turns (turns already asked still run); it stays readable."""
    import asyncio

    from orchestrator.settings import load_settings

    with temporal_errors():
        settings = load_settings()
        engine, sessions = open_store(settings)
        try:
            closed = asyncio.run(_close(settings, sessions, tenant, name))
        finally:
            engine.dispose()
    typer.echo(f"session {name} " + ("closed" if closed else "was closed already"), err=True)
    exit_now(0)


async def _close(settings: Settings, sessions: sessionmaker[Session], tenant: str, name: str) -> bool:
    from orchestrator.connection import connect
    from orchestrator.sessions import close as close_session
    from orchestrator.targets import shared_target

    target = shared_target(settings)
    # No server that outlives a command: no session workflow can be running either.
    client = None if target is None else await connect(target)
    return await close_session(client, sessions, tenant, name)


def ask(
    name: Name,
    question: Annotated[str, typer.Argument(help="The question of this turn.")],
    tenant: TenantOpt = "default",
    detach: Annotated[
        bool, typer.Option(help="Queue the turn and print its run id (needs TEMPORAL_ADDRESS or `rlm dev`).")
    ] = False,
    as_json: JsonOpt = False,
    progress_every: ProgressEvery = PROGRESS_EVERY_S,
    quiet: Quiet = False,
) -> None:
    """Ask a session a question: a new turn, answered over the session's documents, history and notes.

    stdout carries the answer alone (or, with --detach, the turn's run id; `rlm wait RUN` waits for it).
    Exit codes as `rlm wait`: 0 answered, 2 failed, 3 paused (a budget is spent), 5 aborted; 1 bad input."""
    import asyncio

    from orchestrator.logs import results_stdout
    from orchestrator.runs import RunError
    from orchestrator.settings import load_settings
    from orchestrator.targets import dev_holder

    with temporal_errors():
        settings = load_settings()
        if detach and settings.embedded_temporal and dev_holder(settings) is None:
            raise RunError(
                "--detach needs a server that outlives this command: set TEMPORAL_ADDRESS (or run `rlm dev`)"
            )
        engine, sessions = open_store(settings)
        try:
            with results_stdout() as out:
                result = asyncio.run(
                    _ask(
                        settings,
                        sessions,
                        (tenant, name, question),
                        detach,
                        progress_every_s(progress_every, quiet),
                    )
                )
                code = _print(result, as_json, detach, out)
        finally:
            engine.dispose()
    exit_now(code)


async def _ask(
    settings: Settings,
    sessions: sessionmaker[Session],
    what: tuple[str, str, str],
    detach: bool,
    progress: float,
) -> dict[str, Any]:
    from orchestrator.connection import connect
    from orchestrator.runs import RootProbe, settled
    from orchestrator.sessions import ask as ask_session
    from orchestrator.targets import temporal_target

    tenant, name, question = what
    with temporal_target(settings, while_booting=None if detach else load_worker_modules) as target:
        client = await connect(target)
        async with contextlib.AsyncExitStack() as stack:
            own_worker = not detach and await worker_unless_served(stack, client, sessions, settings, None)
            reply = await ask_session(client, sessions, tenant, name, question, settings.task_queue)
            typer.echo(f"session {name}: turn {reply.turn} is run {reply.run_id}", err=True)
            if detach:
                return {"turn": reply.turn, "run_id": reply.run_id}
            async with showing_progress(sessions, reply.run_id, progress):
                probe = RootProbe(settings, reply.run_id, client)
                outcome, summary = await settled(sessions, reply.run_id, None, probe=probe)
            if own_worker:
                await finish_on_own_worker(client, sessions, reply.run_id)
    return {
        "turn": reply.turn,
        "run_id": reply.run_id,
        "status": summary.status,
        "answer": summary.answer,
        "error": summary.error,
        "exit": int(outcome.code),
    }


def _print(result: dict[str, Any], as_json: bool, detach: bool, out: Any) -> int:
    if as_json:
        typer.echo(json.dumps({k: v for k, v in result.items() if k != "exit"}, sort_keys=True), file=out)
    elif detach:
        typer.echo(result["run_id"], file=out)
    else:
        if result["answer"] is not None:  # stdout carries the answer alone: none, nothing (stderr says why)
            typer.echo(result["answer"], file=out)
        typer.echo(f"turn {result['turn']} {result['status']}", err=True)
        if result["error"]:
            typer.echo(f"reason: {result['error']}", err=True)
    return 0 if detach else int(result["exit"])
