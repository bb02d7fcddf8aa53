"""A Temporal dev server of a test's own, with one of the server's limits lowered so that a small run
reaches it, and a harness on it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from orchestrator.devstack import FAST_DISPATCH, SQLITE_PRAGMAS, DevServer, DevServerConfig
from orchestrator.settings import Settings
from tests.orchestrator.harness import Harness


@contextmanager
def limited_server(data_dir: Path, limits: dict[str, str]) -> Iterator[DevServer]:
    """A dev server with ``limits`` (dynamic config values) on top of the test stack's dispatch."""
    config = DevServerConfig(
        data_dir=data_dir, ui=False, dynamic_config={**FAST_DISPATCH, **limits}, sqlite_pragmas=SQLITE_PRAGMAS
    )
    with DevServer(config) as server:
        yield server


async def harness_on(
    server: DevServer, settings: Settings, sessions: sessionmaker[Session], task_queue: str
) -> Harness:
    """A harness whose client and settings point at ``server``, on a task queue of its own."""
    client = await Client.connect(server.address)
    local = dataclasses.replace(settings, temporal_address=server.address, task_queue=task_queue)
    return Harness(client, sessions, local)
