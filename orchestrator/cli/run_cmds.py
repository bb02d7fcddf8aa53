"""``rlm run``, ``rlm status``, ``rlm tree`` (worker and dev: ``server_cmds``; controls: ``control_cmds``).

With no ``TEMPORAL_ADDRESS`` the commands that need Temporal use the server of the ``rlm dev`` serving
their data directory, else start the embedded dev server (SQLite file in the data directory, Web UI,
custom search attributes) and stop it on exit; one data directory never gets two servers
(``orchestrator.devlock``). Every bad input ends with one ``error: ...`` line and exit code 1. stdout
carries the answer alone; everything else goes to stderr.

``rlm run`` is ``rlm submit`` (``orchestrator.runs.submit_run``), then a wait for the root workflow to
close and the run's summary as ``rlm wait`` reads it; a worker runs in this process unless a live
worker of this store already serves the task queue (``orchestrator.runs.serving``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from orchestrator.cli.common import (
    RunIdArg,
    check_reconnect,
    cli_errors,
    exit_now,
    finish_on_own_worker,
    first_line,
    load_worker_modules,
    lost_contact,
    open_store,
    temporal_errors,
    worker_unless_served,
)
from orchestrator.cli.job_cmds import RECONNECT_S, interrupted, summary_json
from orchestrator.cli.output import JsonOpt, PipeSafeConsole, emit_json
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
    from orchestrator.runs import RunInput, RunSummary
    from orchestrator.settings import Settings

console = PipeSafeConsole()


def ui_link(settings: Settings, target: TemporalTarget, workflow_id: str) -> str | None:
    base = target.ui_url or settings.temporal_ui_url
    if not base:
        return None
    wid = urllib.parse.quote(workflow_id, safe="")
    return f"{base}/namespaces/{target.namespace}/workflows/{wid}"


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("status")(status)
    app.command("tree")(tree)


# --- rlm run -----------------------------------------------------------------------------------


def run(
    query: Query,
    context: Context,
    tenant: Tenant = DEFAULT.tenant,
    budget_usd: Budget = DEFAULT.budget_usd,
    max_depth: MaxDepth = DEFAULT.max_depth,
    model: Model = DEFAULT.model,
    sub_model: SubModel = DEFAULT.sub_model,
    deadline: Deadline = DEFAULT.deadline,
    run_id: Annotated[str | None, typer.Option(help="Run id (default: generated).")] = None,
    detach: Annotated[
        bool, typer.Option(help="Start the run and return (needs TEMPORAL_ADDRESS or a running `rlm dev`).")
    ] = False,
    max_iterations: MaxIter = DEFAULT.max_iterations,
    max_subcalls: MaxSub = DEFAULT.max_subcalls,
    concurrency: Concurrency = DEFAULT.concurrency,
    max_tokens: MaxTokens = DEFAULT.max_tokens,
    compact_at: CompactAt = DEFAULT.compact_at,
    context_window: ContextWindow = DEFAULT.context_window,
    leaf_mode: LeafModeOpt = DEFAULT.leaf_mode,
    local_worker: Annotated[
        bool | None,
        typer.Option(
            "--worker/--no-worker",
            help="Run a worker in this process (default: only when no live worker of this store serves "
            "the task queue).",
            show_default=False,
        ),
    ] = None,
    reconnect_for: Reconnect = RECONNECT_S,
    progress_every: ProgressEvery = PROGRESS_EVERY_S,
    quiet: Quiet = False,
) -> None:
    """Answer QUERY over the context with a recursion tree of durable workflows.

    stdout carries the answer alone; progress (a live view on a terminal, else a line every
    --progress-every seconds) and the summary (status, cost, tokens, nodes, wall time, Web UI link) go to
    stderr. Exit: 0 completed, 1 not completed or bad input, 7 lost contact (the run goes on)."""
    import asyncio

    from orchestrator.logs import results_stdout
    from orchestrator.runs import LostContact, RunError
    from orchestrator.settings import load_settings
    from orchestrator.targets import dev_holder

    opts = RunOptions.of(locals())
    with temporal_errors():
        settings = load_settings()
        if (
            local_worker is not False
            and not detach
            and settings.embedded_temporal
            and not dev_holder(settings)
        ):
            # A server of its own has no worker yet: load the worker's modules (litellm takes seconds)
            # while the store is opened and the server starts.
            threading.Thread(target=load_worker_modules, daemon=True).start()
        check_reconnect(reconnect_for)
        progress = progress_every_s(progress_every, quiet)
        if detach and settings.embedded_temporal and dev_holder(settings) is None:
            raise RunError(
                "--detach needs a server that outlives this command: set TEMPORAL_ADDRESS (or run `rlm dev`)"
            )
        request = run_request(settings, query, context, opts)
        engine, sessions = open_store(settings)
        try:
            # The worker runs in this process: whatever a library prints goes to stderr, the answer to stdout.
            with results_stdout() as out:
                code = asyncio.run(
                    _run(
                        settings,
                        sessions,
                        request,
                        (detach, local_worker),
                        (reconnect_for, progress),
                        out,
                    )
                )
        except LostContact as exc:
            code = lost_contact(exc)
        except asyncio.CancelledError:
            typer.echo("stopped by SIGTERM; the run continues on the next `rlm dev` / worker", err=True)
            code = 128 + signal.SIGTERM
        except KeyboardInterrupt:
            code = interrupted("the run continues on the next `rlm dev` / worker")
        finally:
            engine.dispose()
    exit_now(code)


async def _run(
    settings: Settings,
    sessions: sessionmaker[Session],
    request: RunInput,
    modes: tuple[bool, bool | None],
    waits: tuple[float, float],
    out: TextIO,
) -> int:
    """``modes``: (detach, a worker in this process unless detached: yes, no, or None for "unless a live
    worker serves the queue"); ``waits``: (reconnect-for, progress every; 0: none)."""
    import asyncio

    from temporalio.client import WorkflowFailureError

    from orchestrator.connection import connect
    from orchestrator.runs import Patience, read_summary, submit_run
    from orchestrator.runs.root_probe import resume_or_abort
    from orchestrator.targets import temporal_target
    from orchestrator.vocabulary import FINAL_STATUSES, Status
    from orchestrator.workflows.types import root_id

    detach, local_worker = modes
    reconnect_s, progress = waits
    started = time.monotonic()
    # SIGTERM cancels like Ctrl-C, so the worker, its sandboxes and the embedded server are stopped.
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    preload = None if detach or local_worker is False else load_worker_modules
    with temporal_target(settings, while_booting=preload) as target:
        client = await connect(target)
        async with contextlib.AsyncExitStack() as stack:
            own_worker = not detach and await worker_unless_served(
                stack, client, sessions, settings, local_worker
            )
            # The submission of `rlm submit`, refusing an existing run id: `rlm run` answers its own query.
            done = await submit_run(client, sessions, request, settings.task_queue, fresh=True)
            root = root_id(done.run_id)
            link = ui_link(settings, target, root)
            typer.echo(f"run {done.run_id} started" + (f"; watch it at {link}" if link else ""), err=True)
            if detach:
                typer.echo(done.run_id, file=out)
                return 0
            patience = Patience(done.run_id, reconnect_s)
            try:
                # Until the root closes, through operator pauses (`rlm wait` returns at a pause). A fresh
                # handle per attempt: after a dropped connection the wait resumes where it was.
                async with showing_progress(sessions, done.run_id, progress, through_pauses=True):
                    await patience.call(
                        f"Temporal at {target.address}", lambda: client.get_workflow_handle(root).result()
                    )
            except WorkflowFailureError as exc:
                typer.echo(f"error: the root workflow failed: {first_line(exc.cause or exc)}", err=True)
            # Before this process's worker stops: the calls it had in flight settle on it.
            if own_worker:
                await finish_on_own_worker(client, sessions, done.run_id)
            summary = await read_summary(sessions, patience)
    wall = time.monotonic() - started
    if summary.answer is not None:  # stdout carries the answer alone: none, nothing (stderr says why)
        typer.echo(summary.answer, file=out)
    typer.echo(
        f"status {summary.status} | cost {cost_text(summary)} | tokens {summary.prompt_tokens} in / "
        f"{summary.completion_tokens} out | nodes {summary.nodes} | wall {wall:.1f} s"
        + (f" | {link}" if link else ""),
        err=True,
    )
    if summary.error:
        typer.echo(f"reason: {summary.error}", err=True)
    if summary.status not in FINAL_STATUSES:  # its root closed without recording an end: terminated
        why = f"its workflow {root} closed without recording an end (terminated in Temporal?): "
        typer.echo(why + resume_or_abort(done.run_id), err=True)
    return 0 if summary.status == Status.COMPLETED else 1


def cost_text(summary: RunSummary) -> str:
    """``$spent``, and what calls in flight still hold when the summary was read before they settled."""
    from orchestrator.store import format_usd

    held = f" (+ ${format_usd(summary.reserved)} reserved by calls in flight)" if summary.reserved else ""
    return f"${format_usd(summary.cost)}{held}"


# --- rlm status / tree -------------------------------------------------------------------------


def status(
    run_id: RunIdArg,
    as_json: JsonOpt = False,
) -> None:
    """Show a run's status, cost, tokens and node count.

    From the store; for a run not ended, also whether Temporal still runs its root."""
    import asyncio

    from orchestrator.runs import run_summary
    from orchestrator.settings import load_settings
    from orchestrator.store import list_nodes
    from orchestrator.vocabulary import FINAL_STATUSES, PAUSED_STATUSES, Status

    with cli_errors():
        settings = load_settings()
        engine, sessions = open_store(settings)
        try:
            s = run_summary(sessions, run_id)
            with sessions() as session:
                # As `rlm wait --json` lists them: every node waiting for an operator, whatever the pause.
                paused = {
                    n.node_id: n.status for n in list_nodes(session, run_id) if n.status in PAUSED_STATUSES
                }
            stopped = None
            if s.status not in FINAL_STATUSES:
                from orchestrator.runs.wait import stopped_now

                stopped = asyncio.run(stopped_now(settings, sessions, run_id))
        finally:
            engine.dispose()
    if as_json:
        emit_json({**summary_json(s), "paused_nodes": list(paused), "stopped_reason": stopped})
        return
    typer.echo(f"run {s.run_id}: {s.status}")
    tokens = f"{s.prompt_tokens} in / {s.completion_tokens} out"
    typer.echo(f"  cost {cost_text(s)} | tokens {tokens} | nodes {s.nodes}")
    if s.wall_s is not None:
        typer.echo(f"  wall {s.wall_s:.1f} s")
    if s.reserved and s.status in FINAL_STATUSES:
        typer.echo(
            f"  still reserved after the run ended: `rlm abort {run_id}` releases what no call will close"
        )
    for_budget = [node for node, status in paused.items() if status == Status.PAUSED_BUDGET]
    by_operator = [node for node, status in paused.items() if status == Status.PAUSED]
    if for_budget:
        typer.echo(
            f"  paused for budget: {', '.join(for_budget)} (raise the budget, then `rlm resume {run_id}`)"
        )
    if by_operator:
        typer.echo(
            f"  paused by an operator: {', '.join(by_operator)} (`rlm resume {run_id}` lets them go on)"
        )
    if stopped:
        typer.echo(f"  stopped: {stopped}")
    if s.error:
        typer.echo(f"  reason: {s.error}")
    if s.answer is not None:
        typer.echo(f"  answer: {s.answer}")


def tree(
    run_id: RunIdArg,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the nodes as one JSON list (tree order) instead.")
    ] = False,
) -> None:
    """Print the recursion tree: each node's status, iterations, cost and answer preview."""
    from rich.text import Text
    from rich.tree import Tree

    from orchestrator.runs import run_tree
    from orchestrator.settings import load_settings
    from orchestrator.store import format_usd
    from orchestrator.vocabulary import NodeKind

    with cli_errors():
        settings = load_settings()
        engine, sessions = open_store(settings)
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
        if row.kind != NodeKind.LEAF:
            label += f" | iter {row.iterations}"
        label += f" | ${format_usd(row.cost)}"
        if row.answer_preview is not None:
            label += f" | {row.answer_preview!r}"
        if row.error:
            label += f" | {row.error[:80]}"
        parent = nodes.get(row.parent_id or "", top)
        nodes[row.node_id] = parent.add(Text(label))
    console.print(top, highlight=False, soft_wrap=True)
