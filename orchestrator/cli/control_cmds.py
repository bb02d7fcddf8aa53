"""``rlm pause``, ``rlm resume``, ``rlm abort``, ``rlm budget raise``, ``rlm stuck``: operator controls.

TARGET is a run id (the whole tree) or a node id ``<run>/0.3.1`` (that node's subtree). The commands
that talk to Temporal need ``TEMPORAL_ADDRESS`` (the server running the tree), or a running ``rlm dev``
of the data directory, whose server they then use. Every command prints a line for people, or one JSON
object with ``--json``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.common import (
    TargetArg,
    cli_errors,
    duration_s,
    exit_now,
    open_store,
    run_id_param,
    shared_temporal,
)
from orchestrator.cli.common import usd as usd_amount  # `rlm budget raise` has a parameter named usd
from orchestrator.cli.output import JsonOpt

if TYPE_CHECKING:  # the engine is imported by the commands that run, not by `rlm --help`
    from orchestrator.connection import TemporalTarget
    from orchestrator.control import AbortReport, ResumeReport, Target
    from orchestrator.settings import Settings
    from orchestrator.stuck import StuckNode

budget_app = typer.Typer(no_args_is_help=True, help="Budgets: raise a tenant's or a run's.")

# --attempts' largest value: checked before it reaches SQL, whose integers a larger one overflows.
MAX_ATTEMPTS = 1_000_000


def register(app: typer.Typer) -> None:
    app.command("pause")(pause_cmd)
    app.command("resume")(resume_cmd)
    app.command("abort")(abort_cmd)
    app.command("stuck")(stuck_cmd)
    app.add_typer(budget_app, name="budget")


def _temporal() -> tuple[Settings, TemporalTarget]:
    from orchestrator.settings import load_settings

    settings = load_settings()
    return settings, shared_temporal(settings)


def _emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    typer.echo(json.dumps(data, default=str) if as_json else text)


async def _with_client(temporal: tuple[Settings, TemporalTarget], op: Any) -> Any:
    from orchestrator.connection import connect

    settings, target = temporal
    engine, sessions = open_store(settings)
    try:
        client = await connect(target)
        return await op(client, sessions)
    finally:
        engine.dispose()


def _target(raw: str) -> Target:
    from orchestrator.control import parse_target

    return parse_target(raw)


def pause_cmd(target: TargetArg, as_json: JsonOpt = False) -> None:
    """Pause a run or a node's subtree after each node's current step (status `paused`)."""
    import asyncio

    from orchestrator.control import pause
    from orchestrator.store import get_node, get_run
    from orchestrator.vocabulary import FINAL_STATUSES

    with cli_errors():
        tgt = _target(target)
        temporal = _temporal()

        async def op(client: Any, sessions: Any) -> tuple[list[str], str]:
            nodes = await pause(client, sessions, tgt)
            with sessions() as session:  # read after the signals: a run that ended meanwhile says so
                row = get_run(session, tgt.run_id) if tgt.node_id is None else get_node(session, tgt.node_id)
                return nodes, str(row.status)

        nodes, status = asyncio.run(_with_client(temporal, op))
    data: dict[str, Any] = {"target": str(tgt), "paused": nodes}
    if not nodes and status in FINAL_STATUSES:
        # Nothing to hold and nothing `rlm resume` would let go on: say so instead of "pausing 0 nodes".
        # JSON: an "ended" key next to the usual two, which stay as they are for a target that runs.
        data["ended"] = status
        what = "run" if tgt.node_id is None else "node"
        text = f"{what} {tgt} has ended ({status}); nothing was paused"
    else:
        text = f"pausing {len(nodes)} node(s) of {tgt} after their current step; "
        text += f"`rlm resume {tgt}` lets them go on"
    _emit(as_json, data, text)
    exit_now(0)


def resume_cmd(
    target: TargetArg,
    budget_usd: Annotated[
        str | None, typer.Option("--budget-usd", help="Set the run's own budget first (USD).")
    ] = None,
    deadline: Annotated[
        float | None,
        typer.Option(
            help="Seconds a restarted (ended) node may run from now; needed once the deadline passed."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Resume paused nodes, or restart an ended (failed, timed out, terminated, aborted) node."""
    import asyncio

    from orchestrator.control import resume
    from orchestrator.runs import RunError
    from orchestrator.store import set_run_budget

    with cli_errors():
        tgt = _target(target)
        budget = usd_amount(budget_usd, "--budget-usd")
        if deadline is not None and deadline <= 0:
            raise RunError(f"--deadline {deadline} must be > 0 seconds")
        temporal = _temporal()

        async def op(client: Any, sessions: Any) -> ResumeReport:
            if budget is not None:
                with sessions.begin() as session:
                    set_run_budget(session, tgt.run_id, budget)
            return await resume(client, sessions, tgt, deadline)

        report: ResumeReport = asyncio.run(_with_client(temporal, op))
    if report.restarted is not None:
        text = f"restarted {report.restarted} from its last completed iteration"
    elif tgt.node_id is None:
        text = f"resumed {len(report.signalled)} paused node(s) of run {tgt.run_id}"
    else:
        text = f"resumed {len(report.signalled)} paused node(s) under {tgt}"
    _emit(as_json, {"target": str(tgt), **dataclasses.asdict(report)}, text)
    exit_now(0)


def abort_cmd(
    target: TargetArg,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the subtree to stop.")] = 60.0,
    include_missing: Annotated[
        bool,
        typer.Option(
            "--include-missing",
            help="Also end the nodes whose workflows this Temporal server does not have at all (history "
            "deleted, server data lost). Check TEMPORAL_ADDRESS first: on another server they may still run.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a run or a node's subtree: every workflow in it ends aborted, its containers are removed."""
    import asyncio

    from orchestrator.control import abort

    with cli_errors():
        tgt = _target(target)
        temporal = _temporal()
        report: AbortReport = asyncio.run(
            _with_client(temporal, lambda c, s: abort(c, s, tgt, wait, include_missing))
        )
    text = f"aborted {len(report.cancelled)} workflow(s) of {tgt}"
    if report.settled:
        text += f"; recorded the end of {len(report.settled)} node(s) whose workflows had closed without one"
    if report.holds_released:
        text += f"; released {report.holds_released} reservation(s) no call would close"
    if report.containers_removed is not None:
        text += f"; removed {report.containers_removed} leftover container(s)"
    if report.still_running:
        text += f"; still running after {wait:g} s: {', '.join(report.still_running)}"
    _emit(as_json, {"target": str(tgt), **dataclasses.asdict(report)}, text)
    exit_now(1 if report.still_running else 0)


# A negative amount ("-1") must reach the amount's own check instead of being taken for an unknown option.
@budget_app.command("raise", context_settings={"ignore_unknown_options": True})
def budget_raise_cmd(
    usd: Annotated[str, typer.Argument(help="USD to add to the budget, e.g. 5 or 0.50.")],
    tenant: Annotated[str | None, typer.Option(help="Raise this tenant's budget.")] = None,
    run: Annotated[
        str | None, typer.Option(help="Raise this run's own budget.", callback=run_id_param)
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add USD to a tenant's or a run's budget; then `rlm resume RUN` lets paused nodes go on."""
    from orchestrator.control import ControlError, raise_budget
    from orchestrator.runs import RunError
    from orchestrator.settings import load_settings
    from orchestrator.store import format_usd

    with cli_errors():
        amount = usd_amount(usd, "amount", positive=True)
        engine, sessions = open_store(load_settings())
        try:
            done = raise_budget(sessions, amount, tenant=tenant, run=run)
        except ControlError as exc:
            raise RunError(str(exc)) from None
        finally:
            engine.dispose()
    text = f"{done.scope} {done.name}: budget ${format_usd(done.before)} -> ${format_usd(done.after)}"
    if done.paused:  # only paused nodes wait for `rlm resume`; a tenant's raise lists none
        text += f"; {len(done.paused)} paused node(s): resume them with `rlm resume {done.name}`"
    _emit(
        as_json,
        {
            "scope": done.scope,
            "name": done.name,
            "before": format_usd(done.before),
            "after": format_usd(done.after),
            "paused": done.paused,
        },
        text,
    )


def stuck_cmd(
    idle: Annotated[str, typer.Option(help="No progress for this long (90s, 10m, 2h, 1d).")] = "10m",
    attempts: Annotated[int, typer.Option(help="An activity on this attempt or later.")] = 3,
    run: Annotated[str | None, typer.Option(help="Only this run.", callback=run_id_param)] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List running nodes with no progress for --idle or an activity retrying past --attempts."""
    import asyncio

    from orchestrator.durations import DurationError
    from orchestrator.runs import RunError
    from orchestrator.stuck import stuck

    with cli_errors():
        try:
            idle_s = duration_s(idle, "--idle")
        except DurationError as exc:
            raise RunError(f"--idle: {exc}") from None
        if not 1 <= attempts <= MAX_ATTEMPTS:
            raise RunError(f"--attempts {attempts} must be from 1 to {MAX_ATTEMPTS}")
        temporal = _temporal()
        found: list[StuckNode] = asyncio.run(
            _with_client(
                temporal,
                lambda c, s: stuck(c, s, idle_s=idle_s, attempts=attempts, run_id=run, tenant=tenant),
            )
        )
    if as_json:
        typer.echo(json.dumps({"stuck": [dataclasses.asdict(n) for n in found]}))
    elif not found:
        typer.echo("no stuck nodes")
    else:
        for node in found:
            typer.echo(f"{node.node_id}  {node.status}  {node.reason}")
    exit_now(0)
