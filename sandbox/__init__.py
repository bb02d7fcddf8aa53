"""durable-rlm sandbox: run hostile Python in a resource-capped container, keep REPL state across cells.

This package never imports ``orchestrator``: sub-calls are answered by a host-side callback. The
``process`` backend exists for development without Docker and is not a security boundary.

Importing the package loads only ``sandbox.api`` (standard library only), so deterministic code such as
the workflows may use its types; the Docker client and the host side of a session load on first use of
``open_session``, ``check_ready``, ``reap``, ``sweep``, ``SandboxPool`` or ``Session``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .api import (
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
    SubcallKind,
    SubcallRefused,
    SubcallRequest,
)

if TYPE_CHECKING:
    from .factory import check_ready, open_session, reap, sweep
    from .pool import SandboxPool
    from .session import Session
else:
    _ON_FIRST_USE = {
        "check_ready": "factory",
        "open_session": "factory",
        "reap": "factory",
        "sweep": "factory",
        "SandboxPool": "pool",
        "Session": "session",
    }

    def __getattr__(name: str) -> Any:
        module = _ON_FIRST_USE.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value


__all__ = [
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
    "SubcallKind",
    "SubcallRefused",
    "SubcallRequest",
    "check_ready",
    "open_session",
    "reap",
    "sweep",
]
