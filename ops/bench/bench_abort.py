"""How soon an abort ends a run whose leaves are calling a slow model, and what those calls cost.

Starts its own ``rlm dev`` on a fresh data directory. Each repetition submits the scripted map-reduce
over 2,000 words (8 leaves, at most 4 at once) whose leaves take ``--latency-ms`` each, waits until 4
leaves are calling, and stops the run one of three ways (``--how``): ``rlm-abort`` times ``rlm abort
RUN``, which returns once no workflow of the run runs; ``temporal-cancel`` cancels the root's workflow
through a Temporal client, as the Web UI's *Request Cancellation* does, and times until the store
shows every node of the run ended. ``sub-call-cancel`` runs a tree instead (the root splits the
words between two RLM sub-calls, each of which writes its map-reduce with the slow model and fans out
4 leaves), cancels the first sub-call's workflow the same way once its leaves are calling, times until
the store shows its subtree ended, then aborts the run. It reports each wall time and how many leaf
calls (of the stopped subtree) were charged: a call shorter than a workflow task's heartbeat (about
8 s) shows what a cancel that reaches calls only through Temporal lets through.

Usage: ``python ops/bench/bench_abort.py [--reps 3] [--latency-ms 6000,20000]
[--how rlm-abort,temporal-cancel,sub-call-cancel] [--database-url postgresql+psycopg://...]``. The
last line is ``RESULT {json}``; times are seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scratch_dev import add_database_option, scratch_dev

from orchestrator.ids import in_subtree
from orchestrator.vocabulary import FINAL_STATUSES

IN_FLIGHT = 4
QUERY = "How many times does the word 'ERROR' appear? Use 8 chunks."
HOWS = ("rlm-abort", "temporal-cancel", "sub-call-cancel")


def cli(rlm: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(rlm), *args], env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"rlm {args[0]} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


def nodes(rlm: Path, env: dict[str, str], run_id: str) -> list[dict[str, object]]:
    return list(json.loads(cli(rlm, env, "tree", run_id, "--json") or "[]"))


def leaves(rlm: Path, env: dict[str, str], run_id: str, under: str) -> list[dict[str, object]]:
    tree = nodes(rlm, env, run_id)
    return [n for n in tree if n["kind"] == "leaf" and in_subtree(str(n["node_id"]), under)]


async def cancel_in_temporal(address: str, workflow_id: str) -> None:
    from temporalio.client import Client

    client = await Client.connect(address)
    await client.get_workflow_handle(workflow_id).cancel()


def stop(rlm: Path, env: dict[str, str], address: str, run_id: str, target: str, how: str) -> None:
    if how == "rlm-abort":
        cli(rlm, env, "abort", run_id, "--json")
        return
    asyncio.run(cancel_in_temporal(address, target))
    end = time.monotonic() + 120
    while any(
        n["status"] not in FINAL_STATUSES
        for n in nodes(rlm, env, run_id)
        if in_subtree(str(n["node_id"]), target)
    ):
        if time.monotonic() > end:
            raise SystemExit(f"{target}: not every node of its subtree ended within 120 s of the cancel")
        time.sleep(0.1)


def one_abort(
    rlm: Path, env: dict[str, str], address: str, context: Path, run_id: str, latency_ms: int, how: str
) -> dict[str, int]:
    """Submit a run, stop it (or a sub-call) once leaves are calling: the stop's milliseconds, the
    calls charged."""
    models: tuple[str, ...]
    if how == "sub-call-cancel":
        sub_model = f"scripted/mapreduce?latency_ms={latency_ms}&chunks={IN_FLIGHT}"
        models = ("--model", "scripted/recurse", "--sub-model", sub_model, "--max-depth", "1")
        target = f"{run_id}/0.1"
    else:
        models = ("--model", "scripted/mapreduce", "--sub-model", f"scripted/leaf?latency_ms={latency_ms}")
        target = f"{run_id}/0"
    run = ("--context", str(context), "--run-id", run_id, "--concurrency", str(IN_FLIGHT), "--detach")
    cli(rlm, env, "submit", QUERY, *models, *run)
    end = time.monotonic() + 120
    while sum(1 for n in leaves(rlm, env, run_id, target) if n["status"] == "running") < IN_FLIGHT:
        if time.monotonic() > end:
            raise SystemExit(f"{run_id}: {IN_FLIGHT} leaves of {target} were not calling within 120 s")
        time.sleep(0.2)
    started = time.perf_counter()
    stop(rlm, env, address, run_id, target, how)
    abort_s = time.perf_counter() - started
    charged = sum(1 for n in leaves(rlm, env, run_id, target) if float(str(n["cost"])) > 0)
    if how == "sub-call-cancel":
        cli(rlm, env, "abort", run_id, "--json")  # the rest of the tree, untimed
    print(f"{how}, latency {latency_ms} ms: {abort_s:.2f} s, {charged} leaf calls charged", file=sys.stderr)
    return {"abort_ms": round(abort_s * 1000), "charged_calls": charged}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--latency-ms", default="6000,20000", help="comma-separated leaf call latencies")
    parser.add_argument("--how", default=",".join(HOWS), help=f"comma-separated, of {', '.join(HOWS)}")
    add_database_option(parser)
    args = parser.parse_args()
    hows = args.how.split(",")
    if unknown := sorted(set(hows) - set(HOWS)):
        parser.error(f"--how: {', '.join(unknown)} not known; use {', '.join(HOWS)}")
    rows = []
    with scratch_dev("bench-abort-", words=2_000, database_url=args.database_url) as scratch:
        rlm, env, context, store = scratch.rlm, scratch.env, scratch.context, scratch.store
        for how in hows:
            for latency_ms in (int(v) for v in args.latency_ms.split(",")):
                runs = [f"{how}-{latency_ms}-{rep}" for rep in range(args.reps)]
                samples = [
                    one_abort(rlm, env, scratch.dev.address, context, run_id, latency_ms, how)
                    for run_id in runs
                ]
                times = [s["abort_ms"] / 1000 for s in samples]
                rows.append(
                    {
                        "how": how,
                        "latency_ms": latency_ms,
                        "in_flight": IN_FLIGHT,
                        "abort_s_median": round(statistics.median(times), 3),
                        "abort_s": times,
                        "charged_calls": [s["charged_calls"] for s in samples],
                    }
                )
    print("RESULT " + json.dumps({"reps": args.reps, "store": store, "rows": rows}))


if __name__ == "__main__":
    main()
