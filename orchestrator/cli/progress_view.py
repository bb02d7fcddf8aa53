"""Live progress on stderr while ``rlm run``, ``rlm wait``, ``rlm submit`` and ``rlm watch`` wait for a run.

On a terminal, a view redrawn four times a second from a store read every second (``rich.live``): elapsed
time, nodes by status, sub-calls, spend against the run's and the tenant's budget, and what the root and
any paused node do now. Elsewhere (a scheduler's log), one plain ``progress ...`` line every
``--progress-every`` seconds (``RLM_PROGRESS_EVERY``; 0 or ``--quiet`` turns progress off). stdout is
never touched: it carries the answer alone.

A failed read skips a frame (the view says since when the store has not answered); it never ends the
wait, whose own ``Patience`` decides when contact is lost.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer

from orchestrator.cli.common import first_line

if TYPE_CHECKING:
    import asyncio

    from sqlalchemy.orm import Session, sessionmaker

    from orchestrator.runs.progress import ProgressReader, ProgressSnapshot

PROGRESS_EVERY_S = 30.0
REFRESH_S = 1.0  # store reads behind the live view
TICK_S = 0.25  # redraws, so the clock moves between reads
PAUSE_CHECK_S = 5.0  # store reads behind the pause notes of a wait without progress

ProgressEvery = Annotated[
    float,
    typer.Option(
        "--progress-every",
        envvar="RLM_PROGRESS_EVERY",
        help="Seconds between plain progress lines on stderr when it is not a terminal (a terminal gets a "
        "live view); 0: no progress at all.",
    ),
]
Quiet = Annotated[
    bool,
    typer.Option(
        "--quiet",
        help="No progress on stderr (the summary still comes; a pause that waits for an operator is "
        "said once).",
    ),
]


def progress_every_s(seconds: float, quiet: bool) -> float:
    """The checked --progress-every, 0 (no progress) with --quiet."""
    if quiet:
        return 0.0
    if not 0 <= seconds <= 86_400:  # also refuses nan
        from orchestrator.runs import RunError

        raise RunError(f"--progress-every {seconds:g} must be from 0 to 86400 seconds (0: no progress lines)")
    return seconds


class _View(Protocol):
    def fresh(self, snap: ProgressSnapshot | None) -> None: ...
    def failed(self, exc: Exception) -> None: ...
    def tick(self) -> None: ...
    def close(self) -> None: ...


@contextlib.asynccontextmanager
async def showing_progress(
    sessions: sessionmaker[Session], run_id: str, every_s: float, through_pauses: bool = False
) -> AsyncIterator[None]:
    """Progress on stderr while the body waits (``every_s`` 0: none); the view is gone (terminal
    restored) when it leaves, however it leaves (the run ended, Ctrl-C, an error).

    ``through_pauses``: the body waits through operator and budget pauses (``rlm run``, ``rlm watch``).
    Without progress, each pause is still said once: a job would otherwise block until the run's
    deadline with nothing on screen."""
    if every_s == 0 and not through_pauses:
        yield
        return
    import asyncio

    from orchestrator.runs.progress import ProgressReader

    view: _View
    if every_s == 0:
        view, read_every = _PauseNotes(run_id), PAUSE_CHECK_S
    elif sys.stderr.isatty():
        view, read_every = _LiveView(run_id), REFRESH_S
    else:
        view, read_every = _PlainLines(run_id), every_s
    task = asyncio.create_task(_follow(ProgressReader(sessions, run_id), view, read_every))
    try:
        yield
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:  # a broken view must not cost the wait its outcome
            import structlog

            structlog.get_logger(__name__).warning("progress.failed", run_id=run_id, exc_info=True)
        finally:
            view.close()


async def _follow(reader: ProgressReader, view: _View, read_every: float) -> None:
    import asyncio

    # One read in flight at most: a store that hangs holds one thread, not one per tick.
    pending: asyncio.Future[ProgressSnapshot | None] | None = None
    # The live view reads at once; plain lines start after the first interval (short runs stay quiet).
    last = time.monotonic() - (read_every if isinstance(view, _LiveView) else 0.0)
    try:
        while True:
            now = time.monotonic()
            if pending is None and now - last >= read_every:
                pending, last = asyncio.ensure_future(asyncio.to_thread(reader.read)), now
            if pending is not None and pending.done():
                try:
                    view.fresh(pending.result())
                except Exception as exc:  # a skipped frame, whatever the store said
                    view.failed(exc)
                pending = None
            view.tick()
            await asyncio.sleep(TICK_S)
    finally:
        if pending is not None:
            pending.cancel()


# --- text ----------------------------------------------------------------------------------------


def frame(snap: ProgressSnapshot, now: datetime) -> list[tuple[str, str]]:
    """The view's rows, (what, value), also joined into the plain line."""
    nodes = f"{snap.nodes_running} running · {snap.nodes_completed} completed · {snap.nodes_failed} failed"
    if snap.nodes_paused:
        nodes += f" · {snap.nodes_paused} paused"
    rows = [
        ("run", f"{snap.run_id} · {snap.status} · {_duration(snap.elapsed_s(now))}"),
        ("nodes", nodes),
        ("sub-calls", f"{snap.subcalls_finished} of {snap.subcalls_started} finished"),
        ("spend", _spend(snap)),
    ]
    rows += [(doing.label, doing.text) for doing in snap.doing]
    return rows


def plain_line(snap: ProgressSnapshot, now: datetime) -> str:
    return "progress " + " | ".join(f"{what} {value}" for what, value in frame(snap, now))


def _spend(snap: ProgressSnapshot) -> str:
    """Spent, plus what running calls hold (reserved until they settle), against each budget."""
    run = _held(snap.spent, snap.reserved)
    run += f" of run budget ${_usd(snap.budget)}" if snap.budget is not None else ", no run budget"
    tenant = _held(snap.tenant_spent, snap.tenant_reserved)
    return f"{run} · tenant {snap.tenant} {tenant} of ${_usd(snap.tenant_budget)}"


def _held(spent: Decimal, reserved: Decimal) -> str:
    return f"${_usd(spent)}" + (f" (+${_usd(reserved)} held)" if reserved else "")


def _usd(amount: Decimal) -> str:
    text = f"{round(amount, 6).normalize():f}"
    return "0" if text in ("-0", "0") else text


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def _now() -> datetime:
    return datetime.now(UTC)


# --- views ---------------------------------------------------------------------------------------


class _LiveView:
    def __init__(self, run_id: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self.run_id = run_id
        self.snap: ProgressSnapshot | None = None
        self.seen = False
        self.failing: tuple[float, str] | None = None
        # stdout is not redirected: it must carry the answer alone. Log lines on stderr go above the view.
        self.live = Live(
            console=Console(stderr=True),
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=True,
        )
        self.live.start()

    def fresh(self, snap: ProgressSnapshot | None) -> None:
        self.snap, self.seen, self.failing = snap, True, None

    def failed(self, exc: Exception) -> None:
        since = self.failing[0] if self.failing else time.monotonic()
        self.failing = (since, first_line(exc))

    def tick(self) -> None:
        self.live.update(self._render(), refresh=True)

    def close(self) -> None:
        self.live.stop()

    def _render(self) -> Any:
        from rich.table import Table

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        if self.snap is not None:
            for what, value in frame(self.snap, _now()):
                grid.add_row(what, value)
        else:
            grid.add_row("run", f"{self.run_id} · " + ("not in the store yet" if self.seen else "reading"))
        if self.failing is not None:
            since, error = self.failing
            grid.add_row("store", f"no answer for {_duration(time.monotonic() - since)} ({error}); retrying")
        return grid


class _PauseNotes:
    """No progress: one line when the run starts to wait for an operator, again after each resume."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.noted = False

    def fresh(self, snap: ProgressSnapshot | None) -> None:
        if snap is None or not snap.nodes_paused:
            self.noted = False
        elif not self.noted:
            self.noted = True
            _say(pause_note(snap))

    def failed(self, exc: Exception) -> None:
        pass  # the wait's own patience reports a store that stops answering

    def tick(self) -> None:
        pass

    def close(self) -> None:
        pass


def pause_note(snap: ProgressSnapshot) -> str:
    """What waits for an operator, and what the operator can do."""
    paused = [f"{doing.label} {doing.text}" for doing in snap.doing if doing.paused]
    what = "; ".join(paused) if paused else f"{snap.nodes_paused} paused nodes"
    run = snap.run_id
    return (
        f"run {run} waits for an operator: {what}. `rlm resume {run}` (after `rlm budget raise` for a "
        f"budget), or `rlm abort {run}`; this command waits until the run ends"
    )


def _say(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # a closed stderr must not end the wait
        typer.echo(line, err=True)


class _PlainLines:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def fresh(self, snap: ProgressSnapshot | None) -> None:
        if snap is None:
            _say(f"progress run {self.run_id} · not in the store yet")
        else:
            _say(plain_line(snap, _now()))

    def failed(self, exc: Exception) -> None:
        _say(f"progress run {self.run_id} · no answer from the store ({first_line(exc)}); retrying")

    def tick(self) -> None:
        pass

    def close(self) -> None:
        pass
