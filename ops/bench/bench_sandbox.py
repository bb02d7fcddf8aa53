"""Sandbox benchmark (not a test): warm cell round trip, session start, 10 MB snapshot and restore.

Run: .venv/bin/python ops/bench/bench_sandbox.py [--backend docker|process] [--cells 200]
The last line is ``RESULT {json}``; times are milliseconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from orchestrator.logs import configure_logging
from sandbox import SubcallRequest, open_session
from sandbox.imagebuild import ensure_image

# Two shapes of "a 10 MB list of strings": few long strings, and many short ones (pickle pays per item).
TEN_MB_SHAPES = {
    "100k_strings_of_99_chars": ("big = ['%099d' % i for i in range(100_000)]", "100000 99\n"),
    "1m_strings_of_9_chars": ("big = ['%09d' % i for i in range(1_000_000)]", "1000000 9\n"),
}


def _no_subcalls(request: SubcallRequest) -> list[str]:
    raise RuntimeError("the benchmark makes no sub-calls")


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["docker", "process"], default="docker")
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    configure_logging("warning")  # on stderr: stdout carries the RESULT line only
    image = ensure_image() if args.backend == "docker" else None

    starts = []
    for _ in range(args.starts):
        began = time.perf_counter()
        with open_session(backend=args.backend, context_path=None, image=image) as session:
            session.execute("x = 1", _no_subcalls)
            starts.append((time.perf_counter() - began) * 1000)

    with open_session(backend=args.backend, context_path=None, image=image) as session:
        for _ in range(10):  # warm-up
            session.execute("x = 1", _no_subcalls)
        round_trips = []
        for _ in range(args.cells):
            began = time.perf_counter()
            session.execute("x = 1", _no_subcalls)
            round_trips.append((time.perf_counter() - began) * 1000)

        snapshots = {}
        for shape, (code, _) in TEN_MB_SHAPES.items():
            session.execute("big = None", _no_subcalls)
            began = time.perf_counter()
            big = session.execute(code, _no_subcalls)
            build_ms = (time.perf_counter() - began) * 1000
            if big.snapshot is None or big.status != "ok":
                raise SystemExit(f"building {shape} failed: {big}")
            began = time.perf_counter()
            session.execute("pass", _no_subcalls)  # the same namespace snapshotted again, not rebuilt
            snapshots[shape] = {
                "bytes": len(big.snapshot),
                "build_and_snapshot_cell_ms": round(build_ms, 1),
                "snapshot_cell_ms": round((time.perf_counter() - began) * 1000, 1),
                "blob": big.snapshot,
            }

    for shape, (_, expected) in TEN_MB_SHAPES.items():
        with open_session(backend=args.backend, context_path=None, image=image) as fresh:
            began = time.perf_counter()
            fresh.restore(snapshots[shape].pop("blob"))  # type: ignore[arg-type]
            snapshots[shape]["restore_into_new_session_ms"] = round((time.perf_counter() - began) * 1000, 1)
            check = fresh.execute("print(len(big), len(big[-1]))", _no_subcalls)
            if check.stdout != expected:
                raise SystemExit(f"restore of {shape} gave {check.stdout!r}, expected {expected!r}")

    result = {
        "backend": args.backend,
        "cells": args.cells,
        "warm_round_trip_ms": {
            "p50": round(statistics.median(round_trips), 3),
            "p95": round(_percentile(round_trips, 0.95), 3),
            "max": round(max(round_trips), 3),
        },
        "session_start_to_first_result_ms": {
            "p50": round(statistics.median(starts), 1),
            "max": round(max(starts), 1),
            "runs": args.starts,
        },
        "snapshot_10mb": snapshots,
        "targets": {"warm_round_trip_p50_ms": 10, "session_start_ms": 1500},
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
