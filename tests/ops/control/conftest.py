"""Control fixtures: the orchestrator's session fixtures (dev server, PostgreSQL schema, sandbox image,
one in-process worker) and the environment for ``rlm`` subprocesses that talk to them."""

from __future__ import annotations

import os

import pytest

from orchestrator.settings import Settings
from tests.orchestrator.conftest import (  # noqa: F401  (fixtures, registered by import)
    client,
    data_dir,
    engine,
    harness,
    other_queue,
    pg_schema_url,
    sandbox_image,
    sessions,
    settings,
    temporal,
    worker,
)


@pytest.fixture(scope="session")
def rlm_env(settings: Settings) -> dict[str, str]:  # noqa: F811  (the imported fixture)
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": settings.temporal_address or "",
        "RLM_DATABASE_URL": settings.database_url,
        "RLM_DATA_DIR": str(settings.data_dir),
        "RLM_TASK_QUEUE": settings.task_queue,
    }
