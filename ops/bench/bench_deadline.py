"""How late runs end after their deadline, alone and with other runs beside them.

Starts its own ``rlm dev`` on a fresh data directory. Each round submits ``N`` runs at once (one row
per value of ``--concurrent``) of the scripted map-reduce whose leaves take longer than the deadline,
so every run is still fanning out when its deadline passes. It waits until every run has ended, then
reads the store: how long after its deadline each run was recorded ended (``run_late_s``), and the
last of its nodes (``last_node_late_s``). Every run must end ``timed_out`` with nothing reserved.

Usage: ``python ops/bench/bench_deadline.py [--reps 2] [--concurrent 1,4] [--deadline-s 6]
[--chunks 40] [--leaf-ms 60000] [--database-url postgresql+psycopg://...]``. The last line is
``RESULT {json}``; times are seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scratch_dev import add_database_option, scratch_dev
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.settings import load_settings
from orchestrator.store import get_run, list_nodes, make_engine, make_session_factory
from orchestrator.vocabulary import FINAL_STATUSES, Status

CONCURRENCY = 16


def submit(rlm: Path, env: dict[str, str], context: Path, run_id: str, args: argparse.Namespace) -> None:
    cmd = [
        str(rlm), "submit", f"How many times does the word 'ERROR' appear? Use {args.chunks} chunks.",
        "--context", str(context), "--run-id", run_id, "--deadline", str(args.deadline_s),
        "--model", "scripted/mapreduce", "--sub-model", f"scripted/leaf?latency_ms={args.leaf_ms}",
        "--concurrency", str(CONCURRENCY), "--detach",
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"rlm submit exited {done.returncode}:\n{done.stderr[-3000:]}")


def one_round(
    rlm: Path,
    env: dict[str, str],
    context: Path,
    sessions: sessionmaker[Session],
    run_ids: list[str],
    args: argparse.Namespace,
) -> list[dict[str, float]]:
    for run_id in run_ids:
        submit(rlm, env, context, run_id, args)
    end = time.monotonic() + args.deadline_s + 120
    while True:
        with sessions() as s:
            runs = [get_run(s, r) for r in run_ids]
            nodes = {r: list_nodes(s, r) for r in run_ids}
        if all(n.status in FINAL_STATUSES for ns in nodes.values() for n in ns) and all(
            r.finished_at is not None for r in runs
        ):
            break
        if time.monotonic() > end:
            raise SystemExit(f"not every run of {run_ids} ended within 120 s of its deadline")
        time.sleep(0.2)
    samples = []
    for run in runs:
        if run.status != Status.TIMED_OUT or run.reserved_nanos != 0 or run.deadline is None:
            raise SystemExit(f"{run.run_id} ended {run.status} with {run.reserved_nanos} reserved")
        last = max(n.finished_at for n in nodes[run.run_id] if n.finished_at is not None)
        assert run.finished_at is not None
        samples.append(
            {
                "run_late_s": round((run.finished_at - run.deadline).total_seconds(), 3),
                "last_node_late_s": round((last - run.deadline).total_seconds(), 3),
                "nodes": len(nodes[run.run_id]),
            }
        )
    print(f"{len(run_ids)} at once: {samples}", file=sys.stderr)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--concurrent", default="1,4", help="runs at once, comma-separated, one row each")
    parser.add_argument("--deadline-s", type=float, default=6.0)
    parser.add_argument("--chunks", type=int, default=40, help="leaves per run")
    parser.add_argument("--leaf-ms", type=int, default=60_000, help="each leaf's model latency")
    add_database_option(parser)
    args = parser.parse_args()
    rows = []
    with scratch_dev("bench-deadline-", words=8_000, database_url=args.database_url) as scratch:
        rlm, env, context, store = scratch.rlm, scratch.env, scratch.context, scratch.store
        engine = make_engine(load_settings(env).database_url)
        sessions = make_session_factory(engine)
        try:
            for n in (int(v) for v in args.concurrent.split(",")):
                samples = [
                    s
                    for rep in range(args.reps)
                    for s in one_round(
                        rlm, env, context, sessions, [f"dl-{n}-{rep}-{i}" for i in range(n)], args
                    )
                ]
                runs = [s["run_late_s"] for s in samples]
                lasts = [s["last_node_late_s"] for s in samples]
                rows.append(
                    {
                        "concurrent_runs": n,
                        "leaves_calling": n * min(CONCURRENCY, args.chunks),
                        "run_late_s_median": round(statistics.median(runs), 3),
                        "run_late_s_max": max(runs),
                        "last_node_late_s_median": round(statistics.median(lasts), 3),
                        "last_node_late_s_max": max(lasts),
                    }
                )
        finally:
            engine.dispose()
    config = {"deadline_s": args.deadline_s, "chunks": args.chunks, "leaf_ms": args.leaf_ms, "store": store}
    print("RESULT " + json.dumps({"reps": args.reps, "config": config, "rows": rows}))


if __name__ == "__main__":
    main()
