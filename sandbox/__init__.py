"""durable-rlm sandbox: run hostile Python in a resource-capped container, keep REPL state across cells.

This package never imports ``orchestrator``: sub-calls are answered by a host-side callback. The
``process`` backend exists for development without Docker and is not a security boundary.
"""

from .api import (
    NOTE,
    Answer,
    CellResult,
    CellRun,
    CellStatus,
    SandboxClosed,
    SandboxError,
    SandboxLimits,
    SandboxSession,
    SubcallAnswer,
    SubcallHandler,
    SubcallRefused,
    SubcallRequest,
)
from .factory import open_session, reap, sweep
from .pool import SandboxPool
from .session import Session

__all__ = [
    "NOTE",
    "Answer",
    "CellResult",
    "CellRun",
    "CellStatus",
    "SandboxClosed",
    "SandboxError",
    "SandboxLimits",
    "SandboxPool",
    "SandboxSession",
    "Session",
    "SubcallAnswer",
    "SubcallHandler",
    "SubcallRefused",
    "SubcallRequest",
    "open_session",
    "reap",
    "sweep",
]
