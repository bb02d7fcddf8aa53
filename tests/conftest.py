"""Suite-wide settings. Areas keep their own fixtures in tests/<area>/conftest.py."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from orchestrator.vocabulary import LeafMode

# litellm must never fetch its price map over the network; this has to hold before anything imports it.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

DEFAULT_TEST_DATABASE_URL = "postgresql+psycopg://rlm:rlm@127.0.0.1:5432/rlm_test"
# The two ways a leaf runs. ``auto`` picks one of them per call (its choice is tested on its own), so a
# test of what a leaf does runs in these two.
LEAF_MECHANISMS = (LeafMode.WORKFLOW, LeafMode.INLINE)


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C in the tests is a terminal's, and each test process has a data directory of its own.

    A shell without job control (a script, CI) starts its background jobs with SIGINT ignored, and an
    ignored signal stays ignored in every process started below it, so an ``rlm watch`` sent SIGINT
    would rightly go on. A handler of ours is reset to the default in the commands we start.

    ops/test.sh runs the suite in several processes (pytest-xdist): a command a test starts without a
    data directory of its own must not share one (its lock, its embedded servers) with another
    process's tests."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    process = os.environ.get("PYTEST_XDIST_WORKER")
    if process and os.environ.get("RLM_DATA_DIR"):
        data = Path(os.environ["RLM_DATA_DIR"]) / process
        data.mkdir(parents=True, exist_ok=True)
        os.environ["RLM_DATA_DIR"] = str(data)


def test_database_url() -> str:
    """The PostgreSQL URL the suite runs against (ops/test.sh exports it)."""
    return os.environ.get("RLM_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)


test_database_url.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A command run in-process (a CliRunner) configures logging for its process, at warning; the tests
    after it that capture a worker's info events need the configuration they started with."""
    import structlog

    config = structlog.get_config()
    yield
    structlog.configure(**config)


@pytest.fixture(scope="session", autouse=True)
async def _litellm_clients_closed() -> AsyncIterator[None]:
    """Closes the HTTP clients litellm cached for this session's in-process workers, on the loop they
    were opened on; left to the interpreter's exit, each is reported as an unclosed session."""
    yield
    if "litellm" in sys.modules:
        from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

        await close_litellm_async_clients()


@pytest.fixture(scope="session", autouse=True)
def _no_orphaned_sandboxes() -> Iterator[None]:
    """Removes, when the session ends, the sandbox containers of this session's workers that are gone.

    A worker a test SIGKILLs leaves its containers (its pool's too, which carry no run label) to the
    next live worker of its store, and no worker of a test store outlives the session to sweep them.
    """
    started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    yield
    import docker

    from sandbox.pids import alive

    try:
        client = docker.from_env()
        found = client.containers.list(
            all=True, sparse=True, filters={"label": ["durable-rlm=sandbox", "durable-rlm.worker"]}
        )
    except Exception:  # no Docker engine (the fast tier): nothing can have been left on it
        return
    host = socket.gethostname()
    for container in found:
        labels = container.attrs.get("Labels") or {}
        worker_host, _, pid = labels.get("durable-rlm.worker", "").rpartition("-")[0].rpartition("-")
        created = labels.get("durable-rlm.created-at", "")
        if (
            worker_host != host
            or not pid.isdigit()
            or not created
            or dt.datetime.fromisoformat(created) < started
        ):
            continue
        if int(pid) == os.getpid() or not alive(int(pid)):
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)
    client.close()
