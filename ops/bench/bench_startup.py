"""Start-up benchmark: `rlm --help`, `rlm version`, a cold and a warm `rlm run`, and a fan-out sweep.

Every figure is a whole process, from the shell command to its exit, as a user sees it:

1. ``rlm --help`` and ``rlm version`` (the CLI imports the engine only where a command needs it).
2. ``rlm run`` of a needle in 1M characters (``scripted/search``, 0 ms): cold (no `rlm dev`: the command
   starts the embedded server, a worker, runs, stops both) and warm (a running `rlm dev` of the same data
   directory). The last cold run's phases are read from its log's timestamps (``RLM_LOG_LEVEL=info``):
   imports and store check, server start, worker start, submission to the first cell, the run, the
   worker's and the server's stop.
3. ``--fanout``: a count over 100 chunks (100 ``llm_query_batched`` sub-calls at ``--latency-ms``) run
   warm with ``--concurrency`` 16, 32, 64, 128 (``RLM_MODEL_CONCURRENCY=0`` so only the node's
   concurrency limits it), to pick the default per-node concurrency.

Runs against the code the interpreter imports: for an A/B, run it once with ``PYTHONPATH`` pointing at
the other tree. Uses a fresh data directory (SQLite store) unless ``--data-dir``; prints a table, then
``RESULT {json}`` as its last line. Usage: ``python ops/bench/bench_startup.py [--reps 3] [--fanout]
[--leaf-mode inline] [--subcalls 100] [--concurrencies 16,32,64,128] [--skip-startup]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orchestrator
from orchestrator.vocabulary import LeafMode

RLM = Path(sys.executable).parent / "rlm"
NEEDLE = "4817"
NEEDLE_QUERY = "What is the magic number?"
# Phases of a cold run: (name, the log event that ends it); the first starts when the process starts.
PHASES = (
    ("imports + store check", "store.checked"),
    ("dev server start", "devstack.started"),
    ("worker start (imports, lease)", "worker.started"),
    ("submit -> first cell done", "cell.finished"),
    ("rest of the run + worker stop", "worker.stopped"),
    ("dev server stop", "devstack.stopped"),
)


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "RLM_"))}
    env.update(RLM_DATA_DIR=str(data_dir), LITELLM_LOCAL_MODEL_COST_MAP="True", **extra)
    return env


def needle_context(path: Path, size: int = 1_000_000) -> Path:
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "river", "stone", "cloud"]
    picked = rng.choices(words, k=size // 5)
    text = "\n".join(" ".join(picked[i : i + 12]) for i in range(0, len(picked), 12))[:size]
    at = text.find("\n", int(len(text) * 0.61)) + 1
    path.write_text(text[:at] + f"The magic number is {NEEDLE}.\n" + text[at:])
    return path


def count_context(path: Path, words: int) -> tuple[Path, int]:
    vocab = ["alpha", "beta", "gamma", "ERROR", "delta", "omega", "sigma"]
    tokens = [vocab[(i * 7919 + i // 3) % len(vocab)] for i in range(words)]
    path.write_text(" ".join(tokens))
    return path, tokens.count("ERROR")


def timed(cmd: list[str], env: dict[str, str], expect: str | None = None) -> tuple[float, str]:
    """Wall seconds of one command; its stderr. Exits on a failure or a wrong answer."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - started
    if proc.returncode != 0 or (expect is not None and proc.stdout.strip() != expect):
        raise SystemExit(
            f"{' '.join(cmd[:3])} exited {proc.returncode} with {proc.stdout.strip()[:200]!r} "
            f"(expected {expect!r}):\n{proc.stderr[-3000:]}"
        )
    return wall, proc.stderr


def run_cmd(query: str, context: Path, model: str, sub_model: str, *extra: str) -> list[str]:
    return [
        str(RLM),
        "run",
        query,
        "--context",
        str(context),
        "--model",
        model,
        "--sub-model",
        sub_model,
        *extra,
    ]


def phases(stderr: str, wall_s: float, started_epoch: float) -> dict[str, float]:
    """Seconds per phase of a cold run, from the JSON log lines' timestamps."""
    seen: dict[str, float] = {}
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "timestamp" in record and record.get("event") not in seen:
            stamp = datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00")).timestamp()
            seen[str(record.get("event"))] = stamp
    out: dict[str, float] = {}
    last = started_epoch
    for name, event in PHASES:
        if event in seen:
            out[name] = round(seen[event] - last, 3)
            last = seen[event]
    out["process exit"] = round(started_epoch + wall_s - last, 3)
    return out


class Dev:
    """A running `rlm dev` of the data directory (the warm rows)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self.log = log.open("wb")
        self.proc = subprocess.Popen([str(RLM), "dev"], env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 120
        while b"worker.started" not in log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"rlm dev did not start; see {log}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--data-dir", type=Path, default=None, help="default: a fresh temporary directory")
    p.add_argument("--fanout", action="store_true", help="also the per-node concurrency sweep")
    p.add_argument("--concurrencies", default="16,32,64,128")
    p.add_argument("--subcalls", type=int, default=100)
    p.add_argument("--latency-ms", type=int, default=500)
    p.add_argument(
        "--leaf-mode", choices=[str(m) for m in LeafMode], default=str(LeafMode.AUTO), help="of the sweep"
    )
    p.add_argument("--skip-startup", action="store_true", help="only the sweep (with --fanout)")
    args = p.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="rlm-bench-startup-"))
    data_dir = args.data_dir or scratch / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = env_for(data_dir)
    result: dict[str, Any] = {
        "code": str(Path(orchestrator.__file__ or ".").parent.parent),
        "reps": args.reps,
    }
    try:
        if not args.skip_startup:
            result.update(startup(env, data_dir, scratch, args.reps))
        if args.fanout:
            result["fanout"] = sweep(data_dir, scratch, args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report(result, args)


def startup(env: dict[str, str], data_dir: Path, scratch: Path, reps: int) -> dict[str, Any]:
    help_s = [timed([str(RLM), "--help"], env)[0] for _ in range(reps)]
    version_s = [timed([str(RLM), "version"], env)[0] for _ in range(reps)]
    context = needle_context(scratch / "needle.txt")
    run = run_cmd(NEEDLE_QUERY, context, "scripted/search", "scripted/search")
    timed(run, env, NEEDLE)  # the store is created and the image checked once, outside the figures
    cold_s: list[float] = []
    cold_env = env_for(data_dir, RLM_LOG_LEVEL="info")
    breakdown: dict[str, float] = {}
    for _ in range(reps):
        started = time.time()
        wall, stderr = timed(run, cold_env, NEEDLE)
        cold_s.append(wall)
        breakdown = phases(stderr, wall, started)
    dev = Dev(env, scratch / "dev.log")
    try:
        warm_s = [timed(run, env, NEEDLE)[0] for _ in range(reps)]
    finally:
        dev.stop()
    return {
        "help_s": median(help_s),
        "version_s": median(version_s),
        "cold_run_s": median(cold_s),
        "warm_run_s": median(warm_s),
        "cold_minus_warm_s": round(median(cold_s) - median(warm_s), 3),
        "cold_phases_s": breakdown,
    }


def sweep(data_dir: Path, scratch: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Warm fan-outs at each ``--concurrencies``; only the node's concurrency limits them (the model cap
    is off on both workers: `rlm dev`'s and the one in `rlm run`)."""
    uncapped = env_for(data_dir, RLM_MODEL_CONCURRENCY="0")
    path, errors = count_context(scratch / "count.txt", args.subcalls * 200)
    sub = f"scripted/leaf?latency_ms={args.latency_ms}"
    query = f"How many times does the word 'ERROR' appear? Use {args.subcalls} chunks."
    rows: list[dict[str, Any]] = []
    dev = Dev(uncapped, scratch / "dev-sweep.log")
    try:
        for concurrency in (int(c) for c in args.concurrencies.split(",")):
            cmd = run_cmd(query, path, "scripted/mapreduce", sub, "--concurrency", str(concurrency))
            cmd += ["--max-subcalls", str(args.subcalls * 2), "--leaf-mode", args.leaf_mode]
            walls = [timed(cmd, uncapped, str(errors))[0] for _ in range(args.reps)]
            rows.append({"concurrency": concurrency, "leaf_mode": args.leaf_mode, "wall_s": median(walls)})
    finally:
        dev.stop()
    return rows


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    if "help_s" in result:
        print(f"{'rlm --help':<34}{result['help_s']:>8.3f} s")
        print(f"{'rlm version':<34}{result['version_s']:>8.3f} s")
        print(f"{'rlm run needle 1M, cold':<34}{result['cold_run_s']:>8.3f} s")
        print(f"{'rlm run needle 1M, warm (rlm dev)':<34}{result['warm_run_s']:>8.3f} s")
        print(f"{'cold - warm':<34}{result['cold_minus_warm_s']:>8.3f} s")
        for name, seconds in result["cold_phases_s"].items():
            print(f"  cold phase: {name:<30}{seconds:>8.3f} s")
    for row in result.get("fanout", []):
        print(
            f"fan-out {args.subcalls} x {args.latency_ms} ms, {row['leaf_mode']} leaves, "
            f"--concurrency {row['concurrency']:<4}{row['wall_s']:>8.3f} s"
        )
    print("RESULT " + json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
