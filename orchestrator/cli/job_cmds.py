"""``rlm submit``, ``rlm wait``, ``rlm schedule ...``: commands for schedulers (temporal setup: server_cmds).

They talk to a Temporal server that outlives the command: ``TEMPORAL_ADDRESS`` (a cluster), else the
``rlm dev`` serving the data directory; without either they stop with a one-line error, because the
embedded server of ``rlm run`` lives only as long as that command. Workers (``rlm worker`` /
``rlm dev``) run the work. ``rlm wait`` reads only the store. Exit codes: see
``orchestrator.runs.ExitCode`` and docs/jobs.md.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.common import (
    RunIdArg,
    check_reconnect,
    cli_errors,
    exit_now,
    lost_contact,
    open_store,
    shared_temporal,
    temporal_errors,
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
    Budget,
    CompactAt,
    Concurrency,
    Context,
    ContextWindow,
    Deadline,
    LeafModeOpt,
    MaxDepth,
    MaxIter,
    MaxSub,
    MaxTokens,
    Model,
    Query,
    Reconnect,
    RunOptions,
    SubModel,
    Tenant,
    run_request,
)

if TYPE_CHECKING:  # the engine is imported by the commands that use it, not for `rlm --help`
    from sqlalchemy.orm import Session, sessionmaker

    from orchestrator.connection import TemporalTarget
    from orchestrator.runs import RunInput, RunSummary, WaitOutcome
    from orchestrator.settings import Settings

schedule_app = typer.Typer(no_args_is_help=True, help="Temporal Schedules that start runs.")


# The default of --reconnect-for; orchestrator.runs.RECONNECT_S, which a signature must not import.
RECONNECT_S = 300.0


def register(app: typer.Typer) -> None:
    app.command("submit")(submit)
    app.command("wait")(wait)
    app.add_typer(schedule_app, name="schedule")


Timeout = Annotated[
    float | None, typer.Option(help="Give up waiting after this many seconds (exit 6); default: no limit.")
]


def interrupted(what: str) -> int:
    """Ctrl-C: the progress view is gone by now; say what goes on and exit as shells expect (130)."""
    typer.echo(f"interrupted; {what}", err=True)
    return 128 + signal.SIGINT


# --- rlm submit / wait -------------------------------------------------------------------------


def submit(
    query: Query,
    context: Context,
    run_id: Annotated[
        str | None, typer.Option(help="Run id; submitting an existing id reports that run instead.")
    ] = None,
    detach: Annotated[bool, typer.Option(help="Return once the run is started (print its id).")] = False,
    tenant: Tenant = DEFAULT.tenant,
    budget_usd: Budget = DEFAULT.budget_usd,
    max_depth: MaxDepth = DEFAULT.max_depth,
    model: Model = DEFAULT.model,
    sub_model: SubModel = DEFAULT.sub_model,
    deadline: Deadline = DEFAULT.deadline,
    max_iterations: MaxIter = DEFAULT.max_iterations,
    max_subcalls: MaxSub = DEFAULT.max_subcalls,
    concurrency: Concurrency = DEFAULT.concurrency,
    max_tokens: MaxTokens = DEFAULT.max_tokens,
    compact_at: CompactAt = DEFAULT.compact_at,
    context_window: ContextWindow = DEFAULT.context_window,
    leaf_mode: LeafModeOpt = DEFAULT.leaf_mode,
    timeout: Timeout = None,
    reconnect_for: Reconnect = RECONNECT_S,
    as_json: JsonOpt = False,
    progress_every: ProgressEvery = PROGRESS_EVERY_S,
    quiet: Quiet = False,
) -> None:
    """Start a run once per --run-id (idempotent), then wait for it like `rlm wait`.

    With --detach it returns at once; otherwise it waits as `rlm wait` does, with its progress on stderr."""
    import asyncio

    from orchestrator.runs import LostContact
    from orchestrator.settings import load_settings

    opts = RunOptions.of(locals())
    with temporal_errors():
        settings = load_settings()
        target = shared_temporal(settings)
        req = run_request(settings, query, context, opts)
        _check_timeout(timeout)
        check_reconnect(reconnect_for)
        progress = progress_every_s(progress_every, quiet)
        engine, sessions = open_store(settings)
        try:
            code = asyncio.run(
                _submit(settings, target, sessions, req, detach, (timeout, reconnect_for, progress), as_json)
            )
        except LostContact as exc:
            code = lost_contact(exc)
        except KeyboardInterrupt:
            code = interrupted("the run goes on: follow it with `rlm wait` or `rlm watch`")
        finally:
            engine.dispose()
    exit_now(code)


async def _submit(
    settings: Settings,
    target: TemporalTarget,
    sessions: sessionmaker[Session],
    req: RunInput,
    detach: bool,
    waits: tuple[float | None, float, float],
    as_json: bool,
) -> int:
    """``waits``: (timeout, reconnect-for, progress every; 0: no progress)."""
    from orchestrator.connection import connect
    from orchestrator.runs import ExitCode, RootProbe, settled, submit_run

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
    timeout, reconnect_for, progress = waits
    async with showing_progress(sessions, done.run_id, progress):
        probe = RootProbe(settings, done.run_id, client)
        outcome, summary = await settled(sessions, done.run_id, timeout, reconnect_for, probe=probe)
    print_outcome(summary, outcome, as_json)
    return int(outcome.code)


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not timeout >= 0:
        from orchestrator.runs import RunError

        raise RunError(f"--timeout {timeout} must be >= 0 seconds")


def wait(
    run_id: RunIdArg,
    timeout: Timeout = None,
    reconnect_for: Reconnect = RECONNECT_S,
    as_json: JsonOpt = False,
    progress_every: ProgressEvery = PROGRESS_EVERY_S,
    quiet: Quiet = False,
) -> None:
    """Block until the run ends or needs an operator; its exit code says which.

    Progress goes to stderr: a live view on a terminal, else a line every --progress-every seconds.
    Exit: 0 answered, 1 usage error, 2 failed, 3 paused (for budget or by an operator), 4 deadline
    passed, 5 aborted, 6 still running at --timeout, 7 the store did not answer for --reconnect-for
    (the run goes on), 8 its workflow was ended in Temporal outside the engine (resume or abort it), 130
    interrupted (Ctrl-C)."""
    import asyncio

    from orchestrator.runs import LostContact, RootProbe, settled
    from orchestrator.settings import load_settings

    with cli_errors():
        settings = load_settings()
        _check_timeout(timeout)
        check_reconnect(reconnect_for)
        progress = progress_every_s(progress_every, quiet)
        engine, sessions = open_store(settings)

        async def go() -> tuple[WaitOutcome, RunSummary]:
            async with showing_progress(sessions, run_id, progress):
                probe = RootProbe(settings, run_id)
                return await settled(sessions, run_id, timeout, reconnect_for, probe=probe)

        try:
            outcome, summary = asyncio.run(go())
        except LostContact as exc:
            raise typer.Exit(lost_contact(exc)) from None
        except KeyboardInterrupt:
            raise typer.Exit(interrupted("the run goes on")) from None
        finally:
            engine.dispose()
        print_outcome(summary, outcome, as_json)
    raise typer.Exit(int(outcome.code))


def summary_json(s: RunSummary) -> dict[str, Any]:
    """A run's summary as ``rlm wait --json`` and ``rlm status --json`` both print it: one set of keys,
    so a script reads either."""
    from orchestrator.store import format_usd

    return {
        "run_id": s.run_id,
        "status": s.status,
        "answer": s.answer,
        "error": s.error,
        "cost_usd": format_usd(s.cost),
        "reserved_usd": format_usd(s.reserved),
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.completion_tokens,
        "nodes": s.nodes,
        "wall_s": s.wall_s,
    }


def print_outcome(s: RunSummary, outcome: WaitOutcome, as_json: bool, err: bool = False) -> None:
    """``rlm wait``'s report of how the run ended, on stdout (``rlm watch``: on stderr, ``err``)."""
    from orchestrator.runs import ExitCode

    if as_json:
        emit_json(
            {
                **summary_json(s),
                "exit_code": int(outcome.code),
                "outcome": outcome.code.name.lower(),
                "paused_nodes": outcome.paused,
                "stopped_reason": outcome.reason,
            }
        )
        return
    typer.echo(f"run {s.run_id}: {s.status} (exit {int(outcome.code)}: {outcome.code.name.lower()})", err=err)
    if outcome.paused:
        typer.echo(
            f"  paused: {', '.join(outcome.paused)} (raise the budget or resume, then `rlm wait` again)",
            err=err,
        )
    if outcome.reason:
        typer.echo(f"  stopped: {outcome.reason}", err=err)
    if s.error:
        typer.echo(f"  reason: {s.error}", err=err)
    if s.answer is not None and outcome.code == ExitCode.ANSWERED:
        typer.echo(f"  answer: {s.answer}", err=err)


# --- rlm schedule ------------------------------------------------------------------------------


@schedule_app.command("create")
def schedule_create(
    name: Annotated[str, typer.Argument(help="Schedule name (letters, digits, '.', '_', '-').")],
    cron: Annotated[str, typer.Option(help='Cron expression in UTC, e.g. "0 2 * * *".')],
    query: Annotated[str, typer.Option(help="The question each run answers.")],
    context: Context,
    tenant: Tenant = DEFAULT.tenant,
    overlap: Annotated[
        str, typer.Option(help="When a fire comes while the last run still runs: skip, buffer-one, allow.")
    ] = "skip",
    paused: Annotated[bool, typer.Option(help="Create the schedule paused.")] = False,
    note: Annotated[str | None, typer.Option(help="A note shown with the schedule.")] = None,
    budget_usd: Budget = DEFAULT.budget_usd,
    max_depth: MaxDepth = DEFAULT.max_depth,
    model: Model = DEFAULT.model,
    sub_model: SubModel = DEFAULT.sub_model,
    deadline: Deadline = DEFAULT.deadline,
    max_iterations: MaxIter = DEFAULT.max_iterations,
    max_subcalls: MaxSub = DEFAULT.max_subcalls,
    concurrency: Concurrency = DEFAULT.concurrency,
    max_tokens: MaxTokens = DEFAULT.max_tokens,
    compact_at: CompactAt = DEFAULT.compact_at,
    context_window: ContextWindow = DEFAULT.context_window,
    leaf_mode: LeafModeOpt = DEFAULT.leaf_mode,
) -> None:
    """Create a schedule; each fire starts a run with a fresh id over the context stored now."""
    import asyncio

    from orchestrator.connection import connect
    from orchestrator.schedules import ScheduleRequest, create_schedule
    from orchestrator.settings import load_settings

    opts = RunOptions.of({**locals(), "run_id": None})  # each fire makes its own run id
    with temporal_errors():
        settings = load_settings()
        target = shared_temporal(settings)
        run = run_request(settings, query, context, opts)
        req = ScheduleRequest(name, cron, run, overlap, paused, note)
        engine, sessions = open_store(settings)
        try:

            async def go() -> None:
                client = await connect(target)
                prices = settings.prices_file
                await create_schedule(client, sessions, req, settings.task_queue, prices_file=prices)

            asyncio.run(go())
        finally:
            engine.dispose()
    typer.echo(f"schedule {name} created ({cron}, tenant {tenant}){' paused' if paused else ''}")
    exit_now(0)


@schedule_app.command("list")
def schedule_list(as_json: JsonOpt = False) -> None:
    """List the schedules that start runs: cron, tenant, state, fires, next times, recent run ids."""
    import asyncio

    from orchestrator.connection import connect
    from orchestrator.schedules import ScheduleRow, list_schedules
    from orchestrator.settings import load_settings

    with temporal_errors():
        target = shared_temporal(load_settings())

        async def go() -> list[ScheduleRow]:
            return await list_schedules(await connect(target))

        rows = asyncio.run(go())
    if as_json:
        emit_json(rows)
        exit_now(0)
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
    exit_now(0)


def _schedule_do(name: str, action: str, note: str | None = None) -> None:
    import asyncio

    from orchestrator.connection import connect
    from orchestrator.schedules import schedule_action
    from orchestrator.settings import load_settings

    with temporal_errors():
        target = shared_temporal(load_settings())

        async def go() -> None:
            await schedule_action(await connect(target), name, action, note)

        asyncio.run(go())
    done = {"trigger": "triggered", "pause": "paused", "unpause": "unpaused", "delete": "deleted"}[action]
    typer.echo(f"schedule {name} {done}")
    exit_now(0)


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
