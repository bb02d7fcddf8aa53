"""Orchestrator fixtures: one Temporal dev server (via ``orchestrator.devstack``), one migrated
PostgreSQL schema, the Docker sandbox image and one in-process worker for the whole session."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from orchestrator.devstack import DevServer, DevServerConfig
from orchestrator.settings import Settings, load_settings
from orchestrator.store import make_engine, make_session_factory, upgrade
from orchestrator.worker import WorkerOptions, running_worker
from tests.conftest import test_database_url
from tests.orchestrator.harness import Harness


@pytest.fixture(scope="session")
def sandbox_image() -> str:
    from sandbox.imagebuild import ensure_image

    return ensure_image()


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str]:
    admin = create_engine(test_database_url(), isolation_level="AUTOCOMMIT")
    schema = f"orch_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    base = test_database_url()
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(scope="session")
def engine(pg_schema_url: str) -> Iterator[Engine]:
    eng = make_engine(pg_schema_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rlm-data")


@pytest.fixture(scope="session")
def temporal(data_dir: Path) -> Iterator[DevServer]:
    with DevServer(DevServerConfig(data_dir=data_dir / "temporal", ui=False)) as server:
        yield server


@pytest.fixture(scope="session")
def settings(data_dir: Path, pg_schema_url: str, temporal: DevServer, sandbox_image: str) -> Settings:
    env = {
        **os.environ,
        "RLM_DATA_DIR": str(data_dir),
        "RLM_DATABASE_URL": pg_schema_url,
        "TEMPORAL_ADDRESS": temporal.address,
        "RLM_SANDBOX_BACKEND": "docker",
        "RLM_TASK_QUEUE": "orchestrator-tests",
        "RLM_MODEL": "scripted/search",
        "RLM_SUB_MODEL": "scripted/leaf",
    }
    return load_settings(env)


@pytest.fixture(scope="session")
async def client(temporal: DevServer) -> Client:
    return await Client.connect(temporal.address)


@pytest.fixture(scope="session")
async def worker(client: Client, settings: Settings, engine: Engine) -> AsyncIterator[None]:
    # ``engine`` migrates the schema: the worker writes its lease to the store before it polls.
    async with running_worker(client, settings, WorkerOptions()):
        yield


@pytest.fixture(scope="session")
def harness(client: Client, sessions: sessionmaker[Session], settings: Settings, worker: None) -> Harness:
    return Harness(client, sessions, settings)


@pytest.fixture
def other_queue(settings: Settings) -> Settings:
    """Settings for a task queue no session worker serves (tests that run their own workers)."""
    return replace(settings, task_queue=f"q-{uuid.uuid4().hex[:8]}")
