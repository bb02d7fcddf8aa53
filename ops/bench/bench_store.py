"""Store figures on PostgreSQL and SQLite: ledger reserve+settle, step writes, a leaf call's two
transactions (the store work of every sub-call), 100 MB blobs.

Each operation runs in its own committed transaction on one thread, as the activities use the store.
Usage: .venv/bin/python ops/bench/bench_store.py [--ops 500]   (last line: RESULT {json})
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.llm.complete import prepare_model
from orchestrator.logs import configure_logging
from orchestrator.store import (
    create_run,
    create_tenant,
    finish_node,
    get_blob,
    make_engine,
    make_session_factory,
    price_for,
    put_blob,
    put_text,
    record_step,
    reserve,
    settle,
    upgrade,
    upsert_node,
    write_step,
)

POSTGRES_URL = os.environ.get("RLM_TEST_DATABASE_URL", "postgresql+psycopg://rlm:rlm@127.0.0.1:5432/rlm_test")


@contextmanager
def scratch_database(backend: str) -> Iterator[str]:
    """A throw-away schema (PostgreSQL) or file (SQLite), removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="rlm-bench-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'store.sqlite3'}"
        return
    schema = "bench_" + uuid.uuid4().hex[:8]
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def measure(backend: str, ops: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    with scratch_database(backend) as url:
        engine = make_engine(url)
        started = time.perf_counter()
        upgrade(engine)
        figures["upgrade_s"] = round(time.perf_counter() - started, 3)
        sessions = make_session_factory(engine)
        with sessions.begin() as s:
            create_tenant(s, "bench", Decimal(1000))
            create_run(s, "bench-run", tenant="bench")
            upsert_node(s, "bench-run/0", run_id="bench-run", kind="root", depth=0)

        started = time.perf_counter()
        for i in range(ops):
            rid = reserve(sessions, run_id="bench-run", tenant="bench", amount=Decimal("0.01"), key=f"k{i}")
            settle(sessions, rid, Decimal("0.005"))
        figures["reserve_settle_pair_ms"] = round((time.perf_counter() - started) / ops * 1000, 2)

        started = time.perf_counter()
        for i in range(ops):
            with sessions.begin() as s:
                record_step(s, "bench-run/0", i, "generate", 0, cost=Decimal("0.001"), prompt_tokens=10)
        figures["record_step_ms"] = round((time.perf_counter() - started) / ops * 1000, 2)

        prepare_model("scripted/leaf")  # its price, as the worker registers it at start
        started = time.perf_counter()
        for i in range(ops):
            leaf_call_store_work(sessions, f"bench-run/0.{i + 1}")
        figures["leaf_store_ms"] = round((time.perf_counter() - started) / ops * 1000, 2)

        # Half incompressible, half compressible: neither best nor worst case for the chunk compressor.
        data = os.urandom(50 * 2**20) + b"abcdefghij" * (5 * 2**20)
        started = time.perf_counter()
        with sessions.begin() as s:
            sha = put_blob(s, data)
        figures["put_100MB_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        with sessions() as s:
            if get_blob(s, sha) != data:
                raise SystemExit("blob round trip returned different bytes")
        figures["get_100MB_s"] = round(time.perf_counter() - started, 2)
        engine.dispose()
    return figures


def leaf_call_store_work(sessions: sessionmaker[Session], node_id: str) -> None:
    """What ``leaf_call`` asks of the store around one model call, in its two transactions."""
    with sessions.begin() as s:
        created = upsert_node(
            s, node_id, run_id="bench-run", kind="leaf", depth=1, parent_id="bench-run/0", status="running"
        )
        if not created:
            raise SystemExit(f"{node_id} was recorded already")
        price_for(s, "scripted/leaf")
        rid = reserve(s, run_id="bench-run", tenant="bench", amount=Decimal("0.008"), key=f"{node_id}/leaf")
    with sessions.begin() as s:
        settle(s, rid, Decimal("0.00002"))
        answer = put_text(s, f"{node_id}: 17")
        prompt = put_text(s, f"count the errors in chunk {node_id}")
        write_step(
            s,
            node_id,
            0,
            "leaf",
            0,
            input_ref=prompt,
            output_ref=answer,
            prompt_tokens=40,
            cost=Decimal("0.00002"),
        )
        finish_node(s, node_id, status="completed", answer_ref=answer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=500, help="ledger pairs and step writes per backend")
    args = parser.parse_args()
    # Per-operation debug events would dominate what is measured; stdout carries the RESULT line only.
    configure_logging("warning")
    result: dict[str, float] = {}
    for backend in ("postgresql", "sqlite"):
        for name, value in measure(backend, args.ops).items():
            print(f"{backend:10} {name:24} {value}")
            result[f"{backend}_{name}"] = value
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
