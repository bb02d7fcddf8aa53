"""Activities' store work runs through ``Deps.in_store``: on the worker's store thread when it has one
(a SQLite store), else on the event loop's default executor, with the calling task's log context."""

from __future__ import annotations

import concurrent.futures
import threading
from pathlib import Path

import structlog
from sqlalchemy import Engine

from orchestrator.activities.deps import Deps
from orchestrator.settings import load_settings
from orchestrator.store import make_engine
from orchestrator.worker import store_executor


def deps(tmp_path: Path, executor: concurrent.futures.Executor | None) -> Deps:
    return Deps(
        settings=load_settings({"RLM_DATA_DIR": str(tmp_path)}),
        sessions=None,  # type: ignore[arg-type]  # in_store never opens one itself
        client=None,  # type: ignore[arg-type]
        worker_id="test",
        store_executor=executor,
    )


def where() -> tuple[str, object]:
    return threading.current_thread().name, structlog.contextvars.get_contextvars().get("node_id")


async def test_store_work_runs_on_the_store_thread_with_the_log_context(tmp_path: Path) -> None:
    store = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rlm-store")
    structlog.contextvars.bind_contextvars(node_id="run-1/0.4")
    try:
        names = {await deps(tmp_path, store).in_store(where) for _ in range(20)}
        default = await deps(tmp_path, None).in_store(where)
    finally:
        structlog.contextvars.unbind_contextvars("node_id")
        store.shutdown()

    assert len(names) == 1
    ((name, node),) = names
    assert name.startswith("rlm-store") and node == "run-1/0.4"
    assert not default[0].startswith("rlm-store") and default[1] == "run-1/0.4"
    assert default[0] != threading.current_thread().name  # off the event loop either way


def test_a_worker_on_sqlite_has_one_store_thread_and_on_postgresql_none(
    tmp_path: Path, engine: Engine
) -> None:
    sqlite = make_engine(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        thread = store_executor(sqlite)
        assert thread is not None and thread._max_workers == 1
        thread.shutdown()
    finally:
        sqlite.dispose()
    assert engine.dialect.name == "postgresql" and store_executor(engine) is None
