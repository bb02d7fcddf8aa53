"""``scratch_dev``: an ``rlm dev`` of its own on a fresh data directory, for the benchmarks that drive
the CLI against a serving worker (``bench_abort``, ``bench_deadline``); both go when the block ends.

Its store is the data directory's SQLite file, or with ``database_url`` (a PostgreSQL server, as in
production) a fresh schema there, migrated at the start and dropped at the end."""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench_reference import DevServer
from sqlalchemy import create_engine, text


@dataclass(frozen=True)
class ScratchDev:
    rlm: Path  # the CLI of this interpreter's environment
    env: dict[str, str]  # the environment every `rlm` command of the benchmark runs with
    context: Path  # random words, ERROR among them, seeded
    dev: DevServer
    store: str  # "postgresql" or "sqlite", for the benchmark's RESULT


def add_database_option(parser: argparse.ArgumentParser) -> None:
    """``--database-url``, the argument ``scratch_dev`` takes as ``database_url``."""
    parser.add_argument(
        "--database-url",
        help="the store on this PostgreSQL server (a schema of its own, dropped at the end); "
        "default: SQLite in the scratch data directory",
    )


@contextlib.contextmanager
def scratch_dev(prefix: str, words: int, database_url: str | None = None) -> Iterator[ScratchDev]:
    rlm = Path(sys.executable).with_name("rlm")
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        context = data_dir / "words.txt"
        rnd = random.Random(7)
        context.write_text(" ".join(rnd.choice(["ERROR", "ok", "warn", "info"]) for _ in range(words)))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "RLM_"))}
        env.update({"RLM_DATA_DIR": str(data_dir), "RLM_WARM_CLI": "0"})
        with _store(rlm, env, database_url):
            dev = DevServer(rlm, env, data_dir / "dev.log")
            try:
                yield ScratchDev(rlm, env, context, dev, "postgresql" if database_url else "sqlite")
            finally:
                dev.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def _store(rlm: Path, env: dict[str, str], database_url: str | None) -> Iterator[None]:
    """With ``database_url``: a schema of its own there, named in ``env``'s RLM_DATABASE_URL."""
    if database_url is None:
        yield
        return
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        sep = "&" if "?" in database_url else "?"
        env["RLM_DATABASE_URL"] = f"{database_url}{sep}options=-csearch_path%3D{schema}"
        migrated = subprocess.run(
            [str(rlm), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=300
        )
        if migrated.returncode != 0:
            raise SystemExit(f"rlm db upgrade exited {migrated.returncode}:\n{migrated.stderr[-3000:]}")
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
