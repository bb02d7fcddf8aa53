"""``rlm watch RUN``: the progress of ``rlm wait`` until the run ends, for an operator at a terminal.

Unlike ``rlm wait`` it stays through pauses (the view says which node is paused and why) and returns when
the run reaches a final status, with ``rlm wait``'s exit code for it. stdout stays empty: the outcome and
the answer go to stderr, so ``rlm watch`` beside ``rlm run`` never prints an answer twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from orchestrator.cli.common import RunIdArg, check_reconnect, cli_errors, fail, lost_contact, open_store
from orchestrator.cli.job_cmds import RECONNECT_S, interrupted, print_outcome
from orchestrator.cli.progress_view import (
    PROGRESS_EVERY_S,
    ProgressEvery,
    Quiet,
    progress_every_s,
    showing_progress,
)
from orchestrator.cli.run_options import Reconnect

if TYPE_CHECKING:
    from orchestrator.runs import RunSummary, WaitOutcome


def register(app: typer.Typer) -> None:
    app.command("watch")(watch)


def watch(
    run_id: RunIdArg,
    reconnect_for: Reconnect = RECONNECT_S,
    progress_every: ProgressEvery = PROGRESS_EVERY_S,
    quiet: Quiet = False,
) -> None:
    """Show the run's progress on stderr until it ends, through pauses, then its outcome.

    stdout stays empty. Exit as `rlm wait` for a run that ended: 0 answered, 2 failed, 4 deadline
    passed, 5 aborted; 1 unknown run or bad input, 7 the store did not answer for --reconnect-for, 8 its
    workflow was ended in Temporal outside the engine (resume or abort it), 130 interrupted (Ctrl-C)."""
    import asyncio

    from orchestrator.runs import LostContact, RootProbe, settled
    from orchestrator.settings import load_settings
    from orchestrator.store.transcripts import run_exists

    with cli_errors():
        settings = load_settings()
        check_reconnect(reconnect_for)
        progress = progress_every_s(progress_every, quiet)
        engine, sessions = open_store(settings)
        try:
            with sessions() as session:
                if not run_exists(session, run_id):
                    raise fail(
                        f"run {run_id!r} does not exist; check the id `rlm run` or `rlm submit` printed"
                    )

            async def go() -> tuple[WaitOutcome, RunSummary]:
                async with showing_progress(sessions, run_id, progress, through_pauses=True):
                    probe = RootProbe(settings, run_id)
                    return await settled(
                        sessions, run_id, None, reconnect_for, through_pauses=True, probe=probe
                    )

            outcome, summary = asyncio.run(go())
        except LostContact as exc:
            raise typer.Exit(lost_contact(exc)) from None
        except KeyboardInterrupt:
            raise typer.Exit(interrupted("the run goes on")) from None
        finally:
            engine.dispose()
        print_outcome(summary, outcome, as_json=False, err=True)
    raise typer.Exit(int(outcome.code))
