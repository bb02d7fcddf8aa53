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
            return session.finished(message, blob, self._started, self._notes)
        except wire.ChannelTimeout:
            over_wall = self._wall_deadline is not None and time.monotonic() >= self._wall_deadline
            wall = session._limits.cell_wall_timeout_s or 0
            return session.lost(
                CellStatus.TIMEOUT, self._started, self._notes, _over(wall) if over_wall else None
            )
        except wire.ChannelClosed as exc:
            reason: ExitReason = CellStatus.CRASHED
            detail = str(exc)
            runtime = session._runtime
            if runtime is not None and not session._closed:
                # EOF means the runtime is dead or dying; give the engine a moment to record why.
                reason, detail = runtime.exit_reason(wait_s=EXIT_WAIT_S)
            return session.lost(reason, self._started, self._notes, detail)
        except messages.Malformed as exc:
            broke = f"the runtime broke the protocol ({exc})"
            return session.lost(CellStatus.CRASHED, self._started, self._notes, broke)

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
