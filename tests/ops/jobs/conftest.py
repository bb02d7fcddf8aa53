"""Jobs fixtures: the orchestrator's session fixtures (dev server, PostgreSQL schema, sandbox image, one
in-process worker), and the environment for ``rlm`` subprocesses that talk to that server and store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import Engine

from orchestrator.settings import Settings
from tests.orchestrator import conftest as orchestrator_fixtures
from tests.orchestrator.harness import word_context

# The orchestrator's session fixtures, registered here by name.
sandbox_image = orchestrator_fixtures.sandbox_image
pg_schema_url = orchestrator_fixtures.pg_schema_url
engine = orchestrator_fixtures.engine
sessions = orchestrator_fixtures.sessions
data_dir = orchestrator_fixtures.data_dir
temporal = orchestrator_fixtures.temporal
settings = orchestrator_fixtures.settings
client = orchestrator_fixtures.client
worker = orchestrator_fixtures.worker
harness = orchestrator_fixtures.harness


@pytest.fixture(scope="session")
def cli_env(settings: Settings, engine: Engine, worker: None) -> dict[str, str]:
    """``rlm`` in a subprocess sees the session's server, migrated store and task queue (the worker's).

    ``engine`` first: it migrates the store, which the worker writes its lease to when it starts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "RLM_"))}
    env.update(
        {
            "RLM_DATA_DIR": str(settings.data_dir),
            "RLM_DATABASE_URL": settings.database_url,
            "TEMPORAL_ADDRESS": settings.temporal_address or "",
            "RLM_TASK_QUEUE": settings.task_queue,
            "RLM_MODEL": settings.model,
            "RLM_SUB_MODEL": settings.sub_model,
        }
    )
    return env


@pytest.fixture(scope="session")
def words(data_dir: Path) -> tuple[Path, int]:
    """A 3,000-word context and how often ``ERROR`` occurs in it."""
    return word_context(data_dir / "jobs-words.txt", 3_000)
