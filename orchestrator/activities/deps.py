"""What every activity needs, built once per worker and passed down explicitly."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from orchestrator.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Deps:
    settings: Settings
    sessions: sessionmaker[Session]
    client: Client
    worker_id: str
    # Labels every sandbox container this worker starts carries besides its run and node.
    sandbox_labels: Mapping[str, str] = field(default_factory=dict)
    # Where the activities' store work runs (None: the event loop's default executor). On SQLite the
    # worker gives it one thread of its own: every write takes the database's one write lock, and
    # threads queued on it still contend for the interpreter with the thread that holds it.
    store_executor: concurrent.futures.Executor | None = None

    async def in_store(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, blocking store work, off the event loop, with this task's log context."""
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self.store_executor, call)

    @property
    def context_dir(self) -> Path:
        return self.settings.data_dir / "contexts"
