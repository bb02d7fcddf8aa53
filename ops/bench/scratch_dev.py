"""``scratch_dev``: an ``rlm dev`` of its own on a fresh data directory, for the benchmarks that drive
the CLI against a serving worker (``bench_abort``, ``bench_deadline``); both go when the block ends."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench_reference import DevServer


@dataclass(frozen=True)
class ScratchDev:
    rlm: Path  # the CLI of this interpreter's environment
    env: dict[str, str]  # the environment every `rlm` command of the benchmark runs with
    context: Path  # random words, ERROR among them, seeded
    dev: DevServer


@contextlib.contextmanager
def scratch_dev(prefix: str, words: int) -> Iterator[ScratchDev]:
    rlm = Path(sys.executable).with_name("rlm")
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        context = data_dir / "words.txt"
        rnd = random.Random(7)
        context.write_text(" ".join(rnd.choice(["ERROR", "ok", "warn", "info"]) for _ in range(words)))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "RLM_"))}
        env.update({"RLM_DATA_DIR": str(data_dir), "RLM_WARM_CLI": "0"})
        dev = DevServer(rlm, env, data_dir / "dev.log")
        try:
            yield ScratchDev(rlm, env, context, dev)
        finally:
            dev.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
