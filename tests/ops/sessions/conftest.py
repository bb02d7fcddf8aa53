"""Sessions fixtures, as the jobs tests': the orchestrator's session fixtures (dev server, PostgreSQL
schema, sandbox image, one in-process worker), and the
environment for ``rlm`` subprocesses that talk to that server and store."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import Engine

from orchestrator.settings import Settings
from tests.orchestrator import conftest as orchestrator_fixtures

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
other_queue = orchestrator_fixtures.other_queue


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
