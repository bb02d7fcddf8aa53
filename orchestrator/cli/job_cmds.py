"""``rlm submit``, ``rlm wait``, ``rlm schedule ...``: commands for schedulers (temporal setup: server_cmds).

They talk to a Temporal server that outlives the command: ``TEMPORAL_ADDRESS`` (a cluster), else the
``rlm dev`` serving the data directory; without either they stop with a one-line error, because the
embedded server of ``rlm run`` lives only as long as that command. Workers (``rlm worker`` /
``rlm dev``) run the work. ``rlm wait`` reads only the store. Exit codes: see
``orchestrator.jobs.ExitCode`` and docs/jobs.md.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from orchestrator.cli.output import emit_json
from orchestrator.cli.run_cmds import (
    LEAF_MODE_HELP,
    RECONNECT_HELP,
    _errors,
    _exit_now,
    _store,
    _temporal_errors,
    check_reconnect,
    lost_contact,
    run_request,
)
from orchestrator.client import RunError, RunRequest, RunSummary, run_summary, shared_target
from orchestrator.connection import TemporalTarget, connect
from orchestrator.jobs import (
    RECONNECT_S,
    ExitCode,
    LostContact,
    Patience,
    WaitOutcome,
    submit_run,
    wait_for_run,
)
from orchestrator.schedules import (
    ScheduleRequest,
    ScheduleRow,
    create_schedule,
    list_schedules,
    schedule_action,
)
from orchestrator.settings import Settings, load_settings
from orchestrator.store import format_usd

schedule_app = typer.Typer(no_args_is_help=True, help="Temporal Schedules that start runs.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]


def register(app: typer.Typer) -> None:
    app.command("submit")(submit)
    app.command("wait")(wait)
    app.add_typer(schedule_app, name="schedule")


def _target(settings: Settings) -> TemporalTarget:
    target = shared_target(settings)
    if target is None:
        raise RunError(
            "set TEMPORAL_ADDRESS to a Temporal server that outlives this command (a cluster), or start "
            "`rlm dev` for this data directory (the embedded server of `rlm run` stops when it ends)"
        )
    return target


# The options a run takes, shared by `rlm submit` and `rlm schedule create` (as in `rlm run`).
Context = Annotated[str, typer.Option("--context", help="A text file (or .json) holding the context.")]
Tenant = Annotated[str, typer.Option(help="Tenant whose budget pays for the run.")]
Budget = Annotated[str | None, typer.Option("--budget-usd", help="The run's own USD budget.")]
MaxDepth = Annotated[int, typer.Option(help="How deep rlm_query may recurse.")]
Model = Annotated[str | None, typer.Option(help="Root model (litellm string); default RLM_MODEL.")]
SubModel = Annotated[str | None, typer.Option(help="Model of sub-calls; default RLM_SUB_MODEL.")]
Deadline = Annotated[float, typer.Option(help="Seconds the whole tree may take.")]
MaxIter = Annotated[int, typer.Option(help="Iterations per node.")]
MaxSub = Annotated[int, typer.Option(help="Sub-calls per node.")]
Concurrency = Annotated[int, typer.Option(help="Concurrent sub-calls per node.")]
MaxTokens = Annotated[int, typer.Option(help="Completion tokens per model call.")]
LeafMode = Annotated[str | None, typer.Option(help=LEAF_MODE_HELP)]
Timeout = Annotated[
    float | None, typer.Option(help="Give up waiting after this many seconds (exit 6); default: no limit.")
]
Reconnect = Annotated[float, typer.Option(help=RECONNECT_HELP)]


# --- rlm submit / wait -------------------------------------------------------------------------


def submit(
    query: Annotated[str, typer.Argument(help="The question to answer over the context.")],
    context: Context,
    run_id: Annotated[
        str | None, typer.Option(help="Run id; submitting an existing id reports that run instead.")
    ] = None,
    detach: Annotated[bool, typer.Option(help="Return once the run is started (print its id).")] = False,
    tenant: Tenant = "default",
    budget_usd: Budget = None,
    max_depth: MaxDepth = 1,
    model: Model = None,
    sub_model: SubModel = None,
    deadline: Deadline = 3600.0,
    max_iterations: MaxIter = 30,
    max_subcalls: MaxSub = 500,
    concurrency: Concurrency = 16,
    max_tokens: MaxTokens = 4096,
    leaf_mode: LeafMode = None,
    timeout: Timeout = None,
    reconnect_for: Reconnect = RECONNECT_S,
    as_json: JsonOpt = False,
) -> None:
    """Start a run once per --run-id (idempotent); with --detach return at once, else wait like `rlm wait`."""
    with _temporal_errors():
        settings = load_settings()
        target = _target(settings)
        req = run_request(
            settings,
            query,
            Path(context),
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
        _check_timeout(timeout)
        check_reconnect(reconnect_for)
        engine, sessions = _store(settings)
        try:
            code = asyncio.run(
                _submit(settings, target, sessions, req, detach, (timeout, reconnect_for), as_json)
            )
        except LostContact as exc:
            code = lost_contact(exc)
        finally:
            engine.dispose()
    _exit_now(code)


async def _submit(
    settings: Settings,
    target: TemporalTarget,
    sessions: sessionmaker[Session],
    req: RunRequest,
    detach: bool,
    waits: tuple[float | None, float],
    as_json: bool,
) -> int:
    client = await connect(target)
    done = await submit_run(client, sessions, req, settings.task_queue)
    if done.started:
        typer.echo(f"run {done.run_id} started", err=True)
    else:
        typer.echo(f"run {done.run_id} exists already ({done.status}); not started again", err=True)
    if detach:
        if as_json:
            emit_json(done)
        else:
            typer.echo(done.run_id)
        return int(ExitCode.ANSWERED)
    outcome, summary = await _wait(sessions, done.run_id, *waits)
    _print_outcome(summary, outcome, as_json)
    return int(outcome.code)


async def _wait(
    sessions: sessionmaker[Session], run_id: str, timeout_s: float | None, reconnect_s: float
) -> tuple[WaitOutcome, RunSummary]:
    outcome = await wait_for_run(sessions, run_id, timeout_s, reconnect_s=reconnect_s)
    patience = Patience(run_id, reconnect_s)
    summary = await patience.call("the store", lambda: asyncio.to_thread(run_summary, sessions, run_id))
    return outcome, summary


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not timeout >= 0:
        raise RunError(f"--timeout {timeout} must be >= 0 seconds")


def wait(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    timeout: Timeout = None,
    reconnect_for: Reconnect = RECONNECT_S,
    as_json: JsonOpt = False,
) -> None:
    """Block until the run ends or needs an operator. Exit: 0 answered, 1 usage error, 2 failed,
    3 paused (for budget or by an operator), 4 deadline passed, 5 aborted, 6 still running at --timeout,
    7 the store did not answer for --reconnect-for (the run goes on)."""
    with _errors():
        settings = load_settings()
        _check_timeout(timeout)
        check_reconnect(reconnect_for)
        engine, sessions = _store(settings)
        try:
            outcome, summary = asyncio.run(_wait(sessions, run_id, timeout, reconnect_for))
        except LostContact as exc:
            raise typer.Exit(lost_contact(exc)) from None
        finally:
            engine.dispose()
        _print_outcome(summary, outcome, as_json)
    raise typer.Exit(int(outcome.code))


def _print_outcome(s: RunSummary, outcome: WaitOutcome, as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "run_id": s.run_id,
                "status": s.status,
                "exit_code": int(outcome.code),
                "outcome": outcome.code.name.lower(),
                "paused_nodes": outcome.paused,
                "answer": s.answer,
                "error": s.error,
                "cost_usd": format_usd(s.cost),
                "prompt_tokens": s.prompt_tokens,
                "completion_tokens": s.completion_tokens,
                "nodes": s.nodes,
                "wall_s": s.wall_s,
            }
        )
        return
    typer.echo(f"run {s.run_id}: {s.status} (exit {int(outcome.code)}: {outcome.code.name.lower()})")
    if outcome.paused:
        typer.echo(
            f"  paused: {', '.join(outcome.paused)} (raise the budget or resume, then `rlm wait` again)"
        )
    if s.error:
        typer.echo(f"  reason: {s.error}")
    if s.answer is not None and outcome.code == ExitCode.ANSWERED:
        typer.echo(f"  answer: {s.answer}")


# --- rlm schedule ------------------------------------------------------------------------------


@schedule_app.command("create")
def schedule_create(
    name: Annotated[str, typer.Argument(help="Schedule name (letters, digits, '.', '_', '-').")],
    cron: Annotated[str, typer.Option(help='Cron expression in UTC, e.g. "0 2 * * *".')],
    query: Annotated[str, typer.Option(help="The question each run answers.")],
    context: Context,
    tenant: Tenant = "default",
    overlap: Annotated[
        str, typer.Option(help="When a fire comes while the last run still runs: skip, buffer-one, allow.")
    ] = "skip",
    paused: Annotated[bool, typer.Option(help="Create the schedule paused.")] = False,
    note: Annotated[str | None, typer.Option(help="A note shown with the schedule.")] = None,
    budget_usd: Budget = None,
    max_depth: MaxDepth = 1,
    model: Model = None,
    sub_model: SubModel = None,
    deadline: Deadline = 3600.0,
    max_iterations: MaxIter = 30,
    max_subcalls: MaxSub = 500,
    concurrency: Concurrency = 16,
    max_tokens: MaxTokens = 4096,
    leaf_mode: LeafMode = None,
) -> None:
    """Create a schedule; each fire starts a run with a fresh id over the context stored now."""
    with _temporal_errors():
        settings = load_settings()
        target = _target(settings)
        run = run_request(
            settings,
            query,
            Path(context),
            tenant=tenant,
            budget_usd=budget_usd,
            model=model,
            sub_model=sub_model,
            deadline=deadline,
            run_id=None,
            max_depth=max_depth,
            max_iterations=max_iterations,
            max_subcalls=max_subcalls,
            concurrency=concurrency,
            max_tokens=max_tokens,
            leaf_mode=leaf_mode,
        )
        req = ScheduleRequest(name, cron, run, overlap, paused, note)
        engine, sessions = _store(settings)
        try:

            async def go() -> None:
                await create_schedule(await connect(target), sessions, req, settings.task_queue)

            asyncio.run(go())
        finally:
            engine.dispose()
    typer.echo(f"schedule {name} created ({cron}, tenant {tenant}){' paused' if paused else ''}")
    _exit_now(0)


@schedule_app.command("list")
def schedule_list(as_json: JsonOpt = False) -> None:
    """List the schedules that start runs: cron, tenant, state, fires, next times, recent run ids."""
    with _temporal_errors():
        target = _target(load_settings())

        async def go() -> list[ScheduleRow]:
            client: Client = await connect(target)
            return await list_schedules(client)

        rows = asyncio.run(go())
    if as_json:
        emit_json(rows)
        _exit_now(0)
    if not rows:
        typer.echo(
            "no schedules; create one with `rlm schedule create NAME --cron ... --query ... --context ...`"
        )
    for row in rows:
        state = "paused" if row.paused else "active"
        nxt = row.next_fires[0].isoformat() if row.next_fires else "-"
        last = row.recent_runs[-1] if row.recent_runs else "-"
        typer.echo(
            f"{row.name}: {state} | cron {row.cron} | tenant {row.tenant} | fires {row.fires} | next {nxt}"
            f" | last run {last} | {row.query!r}"
        )
    _exit_now(0)


def _schedule_do(name: str, action: str, note: str | None = None) -> None:
    with _temporal_errors():
        target = _target(load_settings())

        async def go() -> None:
            await schedule_action(await connect(target), name, action, note)

        asyncio.run(go())
    done = {"trigger": "triggered", "pause": "paused", "unpause": "unpaused", "delete": "deleted"}[action]
    typer.echo(f"schedule {name} {done}")
    _exit_now(0)


@schedule_app.command("trigger")
def schedule_trigger(name: Annotated[str, typer.Argument(help="Schedule name.")]) -> None:
    """Fire the schedule now (the overlap policy applies); its run id is in `rlm schedule list`."""
    _schedule_do(name, "trigger")


@schedule_app.command("pause")
def schedule_pause(
    name: Annotated[str, typer.Argument(help="Schedule name.")],
    note: Annotated[str | None, typer.Option(help="Why it is paused.")] = None,
) -> None:
    """Pause the schedule: no fires until unpaused (runs already started go on)."""
    _schedule_do(name, "pause", note)


@schedule_app.command("unpause")
def schedule_unpause(name: Annotated[str, typer.Argument(help="Schedule name.")]) -> None:
    """Unpause the schedule."""
    _schedule_do(name, "unpause")


@schedule_app.command("delete")
def schedule_delete(name: Annotated[str, typer.Argument(help="Schedule name.")]) -> None:
    """Delete the schedule (runs it started go on)."""
    _schedule_do(name, "delete")
