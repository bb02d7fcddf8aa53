"""``Cell``: one cell of a sandbox session, driven a message at a time.

Each ``advance`` blocks while the runtime computes, then hands back the cell's next sub-call request or
its result. Between steps nothing waits on the runtime, so an async caller (the ``execute`` activity)
answers a sub-call on its event loop without holding a thread; ``Session.execute`` drives the same steps
with a synchronous handler.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

import structlog

from . import messages
from .api import (
    CellResult,
    CellStatus,
    SandboxClosed,
    SandboxError,
    SubcallAnswer,
    SubcallRefused,
    SubcallRequest,
)
from .runtime import wire

if TYPE_CHECKING:
    from .session import Session

log = structlog.get_logger("sandbox")

ExitReason = Literal[CellStatus.OOM, CellStatus.CRASHED]
# How long a runtime that hung up may take to show why it stopped (an OOM kill, a crash).
EXIT_WAIT_S = 5.0


def gib(size: int) -> str:
    return f"{size / (1 << 30):.2g} GiB" if size >= 1 << 30 else f"{size / (1 << 20):.0f} MiB"


def seconds(value: float) -> str:
    return f"{value:g} s"


class Cell:
    """One cell of a session, driven a message at a time (the ``CellRun`` protocol).

    Each ``advance`` blocks while the runtime computes, then hands back the cell's next sub-call request
    or its result; between steps nothing waits on the runtime, so an async caller can answer a sub-call
    without holding a thread. The cell's compute timeout counts only the time inside ``advance``.
    """

    def __init__(self, session: Session, code: str) -> None:
        self._session = session
        self._code = code
        self._notes: list[str] = []
        self._started = time.monotonic()
        wall = session._limits.cell_wall_timeout_s
        self._wall_deadline = None if wall is None else self._started + wall
        self._compute_left = session._limits.cell_timeout_s
        self._begun = False
        self._done = False
        self._pending = 0  # prompts of the sub-call waiting for its answer

    def advance(self, reply: SubcallAnswer | None = None) -> SubcallRequest | CellResult:
        session = self._session
        if self._done:
            raise SandboxError("this cell has finished; begin a new one")
        session._check_open()
        try:
            step = self._step(reply)
        except BaseException as exc:
            self._done = True
            if session._closed:
                raise SandboxClosed("the session was closed while the cell was running") from exc
            raise
        self._done = isinstance(step, CellResult)
        return step

    def abandon(self) -> None:
        """Give up on the cell half-way (its sub-call failed unexpectedly): the namespace goes back to
        before it."""
        self._done = True
        self._session.replace()

    def _step(self, reply: SubcallAnswer | None) -> SubcallRequest | CellResult:
        session = self._session
        try:
            if not self._begun:
                self._begun = True
                if session.channel_broken():
                    gone = "was closed" if session._runtime is None else "had died"
                    session.replace()
                    self._notes.append(
                        f"the sandbox {gone} between cells; a new one was started from the last snapshot"
                    )
                session.send(messages.Exec(code=self._code))
            elif reply is None:
                raise ValueError("advance() needs the answer to the cell's pending sub-call")
            else:
                session.send(self._answer(reply))
                if self._wall_deadline is not None and time.monotonic() >= self._wall_deadline:
                    raise wire.ChannelTimeout("wall-clock cap reached while answering a sub-call")
            waiting_since = time.monotonic()
            deadline = waiting_since + self._compute_left
            if self._wall_deadline is not None:
                deadline = min(deadline, self._wall_deadline)
            message, blob = session.recv(deadline)
            self._compute_left -= time.monotonic() - waiting_since
            if isinstance(message, SubcallRequest):
                self._pending = len(message.prompts)
                return message
            if not isinstance(message, messages.Result):
                raise messages.Malformed(f"a {type(message).__name__} message in the middle of a cell")
            return self._finished(message, blob)
        except wire.ChannelTimeout:
            over_wall = self._wall_deadline is not None and time.monotonic() >= self._wall_deadline
            wall = session._limits.cell_wall_timeout_s or 0
            return self._lost(CellStatus.TIMEOUT, _over(wall) if over_wall else None)
        except wire.ChannelClosed as exc:
            reason: ExitReason = CellStatus.CRASHED
            detail = str(exc)
            runtime = session._runtime
            if runtime is not None and not session._closed:
                # EOF means the runtime is dead or dying; give the engine a moment to record why.
                reason, detail = runtime.exit_reason(wait_s=EXIT_WAIT_S)
            return self._lost(reason, detail)
        except messages.Malformed as exc:
            broke = f"the runtime broke the protocol ({exc})"
            return self._lost(CellStatus.CRASHED, broke)

    def _lost(self, status: CellStatus, detail: str | None) -> CellResult:
        """The result of a cell whose runtime timed out, ran out of memory or died: a new runtime holds
        the state from before the cell."""
        session = self._session
        limits = session._limits
        if status == CellStatus.TIMEOUT:
            what = f"cell timed out after {detail or seconds(limits.cell_timeout_s)}"
        elif status == CellStatus.OOM:
            what = f"cell ran out of memory (limit {gib(limits.memory_bytes)})"
        else:
            what = f"the sandbox died during the cell: {detail}"
        variables = session.replace()
        snapshot = session._last_snapshot
        self._notes.append(
            f"{what}; {'state restored to before the cell' if snapshot else 'state reset (no snapshot yet)'}"
        )
        log.warning("sandbox.cell_lost", status=status, detail=detail)
        return CellResult(
            status=status,
            stdout="",
            stderr="",
            stdout_cut=0,
            stderr_cut=0,
            traceback=None,
            answer=None,
            variables=variables,
            unpicklable=[],
            duration_s=time.monotonic() - self._started,
            subcalls=0,
            snapshot=snapshot,
            message="; ".join(self._notes),
        )

    def _finished(self, result: messages.Result, blob: bytes) -> CellResult:
        """The result of a cell that ran to its end; its snapshot becomes the one to restore."""
        if result.unpicklable:
            reasons = result.unpicklable_reasons
            self._notes.append(
                "not in the snapshot: "
                + "; ".join(f"{name} ({reasons.get(name, '?')})" for name in result.unpicklable)
            )
        self._session._last_snapshot = blob
        cell = CellResult(
            status=CellStatus.OK if result.ok else CellStatus.ERROR,
            stdout=result.stdout,
            stderr=result.stderr,
            stdout_cut=result.stdout_cut,
            stderr_cut=result.stderr_cut,
            traceback=result.traceback,
            answer=result.answer,
            variables=result.variables,
            unpicklable=result.unpicklable,
            duration_s=time.monotonic() - self._started,
            subcalls=result.subcalls,
            snapshot=blob,
            message="; ".join(self._notes) or None,
        )
        log.info(
            "sandbox.cell_finished",
            status=cell.status,
            ms=round(cell.duration_s * 1000, 1),
            compute_ms=round(result.compute_s * 1000, 1),
            subcalls=cell.subcalls,
            snapshot_bytes=len(blob),
        )
        return cell

    def _answer(self, reply: SubcallAnswer) -> messages.ToRuntime:
        if isinstance(reply, SubcallRefused):
            return messages.SubcallRefused(reason=reply.reason)
        if not isinstance(reply, list) or len(reply) != self._pending:
            got = len(reply) if isinstance(reply, list) else type(reply).__name__
            reason = f"the host answered with {got} results for {self._pending} prompts"
            log.error("sandbox.subcall_bad_answer", reason=reason)
            return messages.SubcallRefused(reason=reason)
        return messages.SubcallAnswers(answers=[str(a) for a in reply])


def _over(wall_s: float) -> str:
    return f"its wall-clock cap of {seconds(wall_s)}"
