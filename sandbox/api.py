"""The sandbox's public types: limits, sub-call requests, cell results, the session protocol, errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Protocol


class CellStatus(StrEnum):
    """How a cell ended."""

    OK = "ok"
    ERROR = "error"  # its code raised
    TIMEOUT = "timeout"  # its own running time, or its wall-clock cap, ran out
    OOM = "oom"  # the out-of-memory killer ended the runtime
    CRASHED = "crashed"  # the runtime died or broke the protocol


class SubcallKind(StrEnum):
    """What a cell's call asks the host for; the runtime sends these strings."""

    LLM = "llm"  # llm_query[_batched]: a single model call per prompt
    RLM = "rlm"  # rlm_query[_batched]: a recursive RLM call per prompt
    NOTE = "note"  # a session turn's remember(text): the host stores the note, no model is asked


@dataclass(frozen=True)
class SandboxLimits:
    """Caps of one session; every one is configurable."""

    memory_bytes: int = 1 << 30  # memory == memory+swap: the sandbox never swaps
    cpus: float = 1.0
    pids: int = 128
    tmpfs_bytes: int = 64 << 20
    # Measures the cell's own running time; time spent waiting on the host for sub-call answers is not
    # counted (a map over 100 chunks can take minutes of model time).
    cell_timeout_s: float = 120.0
    output_chars: int = 20_000
    log_bytes: int = 1 << 20
    # Wall-clock cap on a whole cell, sub-call waits included; None leaves that to the caller's deadline.
    cell_wall_timeout_s: float | None = None
    # Largest control message (a sub-call batch, a cell result); snapshots may be up to memory_bytes.
    message_bytes: int = 64 << 20
    # How long a new container may take to start and answer its first message.
    start_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        problems = []
        for name in ("memory_bytes", "pids", "tmpfs_bytes", "log_bytes", "message_bytes"):
            if getattr(self, name) <= 0:
                problems.append(f"{name}={getattr(self, name)} must be > 0")
        for name in ("cpus", "cell_timeout_s", "start_timeout_s"):
            if not getattr(self, name) > 0:
                problems.append(f"{name}={getattr(self, name)} must be > 0")
        if self.output_chars < 0:
            problems.append(f"output_chars={self.output_chars} must be >= 0")
        if self.cell_wall_timeout_s is not None and not self.cell_wall_timeout_s > 0:
            problems.append(f"cell_wall_timeout_s={self.cell_wall_timeout_s} must be > 0 or None")
        if self.memory_bytes < 32 << 20:
            problems.append(f"memory_bytes={self.memory_bytes} is below the 32 MiB Python needs to start")
        if problems:
            raise ValueError("invalid SandboxLimits: " + "; ".join(problems))


@dataclass(frozen=True)
class SubcallRequest:
    kind: SubcallKind
    prompts: list[str]  # a single llm_query is a batch of one
    model: str | None
    seq: int  # 1-based, counts sub-call requests within the current cell
    # True for llm_query_batched / rlm_query_batched: the caller wants every answer that exists, so a
    # handler may answer a failed item with a marker string instead of raising for the whole call.
    batched: bool = False


class SubcallRefused(Exception):
    """The host's refusal of a sub-call (raised by a handler, or given to ``Cell.advance``); the code in
    the cell gets the runtime's ``SubcallError`` carrying ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


SubcallHandler = Callable[[SubcallRequest], list[str]]
# What the host answers a sub-call with: one string per prompt, or the reason it refused.
SubcallAnswer = list[str] | SubcallRefused


@dataclass(frozen=True)
class Answer:
    content: str
    ready: bool


@dataclass(frozen=True)
class CellResult:
    status: CellStatus
    stdout: str
    stderr: str
    stdout_cut: int  # characters removed by truncation
    stderr_cut: int
    traceback: str | None
    answer: Answer | None
    variables: dict[str, str]  # user variable name -> type name
    unpicklable: list[str]
    duration_s: float  # wall time on the host, sub-call waits included
    subcalls: int  # prompts sent to the host (a batch of 100 counts 100)
    snapshot: bytes | None  # the picklable user variables (+ answer) after the cell
    message: str | None  # e.g. "cell timed out after 120 s; state restored to before the cell"


class SandboxError(RuntimeError):
    """The sandbox could not be started or driven; the message says what failed and how to fix it."""


class SandboxClosed(SandboxError):
    """The session was used after ``close()``."""


class CellRun(Protocol):
    """One cell driven a message at a time (``SandboxSession.begin_cell``), for a caller that must not
    block while it answers a sub-call: each ``advance`` blocks only while the cell computes."""

    def advance(self, reply: SubcallAnswer | None = None) -> SubcallRequest | CellResult:
        """Start the cell (``reply`` None) or answer its pending sub-call; returns its next sub-call
        request or its result."""
        ...


class SandboxSession(Protocol):
    def execute(self, code: str, on_subcall: SubcallHandler) -> CellResult: ...

    def begin_cell(self, code: str) -> CellRun: ...

    def restore(self, snapshot: bytes) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> SandboxSession: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
