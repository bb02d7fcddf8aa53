"""Sub-call benchmark: per-sub-call overhead, a 1,000-way fan-out, a tree of 1,000+ nodes.

Runs the real stack: the embedded Temporal dev server (orchestrator.devstack), one worker
(orchestrator.worker), the Docker sandbox (or ``--backend process``), the store (a fresh SQLite file
unless ``--database-url``), and the scripted model through litellm. Scenarios 1-3 run once per leaf
mode (``--leaf-modes``): ``workflow`` (a ``Leaf`` child workflow per ``llm_query``) and ``inline``
(a local activity of the parent). ``auto``, the default mode, runs one of the two for each call (a
single ``llm_query`` as ``workflow``, a batch of 1,000 ``inline``); name it to run it too.

1. overhead: one node calls ``llm_query`` 500 times one after another (``scripted/mapreduce?parallel=0``)
   with a zero-latency sub model; the cell times each call from inside the sandbox. Overhead = round
   trip minus the leaf's own model time.
2. fanout: 1,000 sub-calls through ``llm_query_batched`` at 200 ms simulated latency, concurrency 16;
   the cell's wall time against the ideal 1000 / 16 * 0.2 s = 12.5 s, and what each sub-call added to
   the root's history (events and bytes).
   Both report the CPU time per sub-call of this process (the worker, the client), of the worker's
   model-call process (``--model-calls process``, the default, as ``rlm dev`` and ``rlm worker`` run;
   ``worker`` keeps the calls in this process) and of the dev server, over the whole run: with two
   cores the fan-out is bound by their sum.
3. tree: the root fans out to 10 ``rlm_query`` children, each maps 100 leaves: 1,011 nodes.
4. dispatch (``--scenarios dispatch``): the bare Temporal costs behind a sub-call -- a no-op Update
   round trip and a no-op child workflow started and awaited from workflow code -- on a dev server
   with the server's default dynamic config and on one with ``FAST_DISPATCH`` + ``SQLITE_PRAGMAS``,
   each with the worker's workflow cache on and off. The child is timed by the workflow clock and,
   to show why "3.5 ms uncached" was a mirage, by the process clock inside workflow code.

Prints ``RESULT {json}`` as its last line. Usage: ``python ops/bench/bench_subcalls.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from dispatch_scenario import dispatch
from figures import CpuMeter
from temporalio.client import Client

from orchestrator.devstack import FAST_DISPATCH, SQLITE_PRAGMAS, DevServer, DevServerConfig
from orchestrator.runs import RunRequest, run_summary, run_tree, start_run
from orchestrator.settings import Settings, load_settings
from orchestrator.store import find_step, list_nodes, list_steps, make_engine, make_session_factory, upgrade
from orchestrator.vocabulary import LeafMode, ModelCalls
from orchestrator.worker import WorkerOptions, running_worker
from orchestrator.workflows.types import Limits, root_id

ROUND_TRIP = re.compile(r"sub-call round trip ms: p50 ([\d.]+) p95 ([\d.]+) n (\d+)")


def words(path: Path, count: int) -> tuple[Path, int]:
    vocab = ["alpha", "beta", "gamma", "ERROR", "delta", "omega", "sigma"]
    tokens = [vocab[(i * 7919 + i // 3) % len(vocab)] for i in range(count)]
    path.write_text(" ".join(tokens))
    return path, tokens.count("ERROR")


async def run_one(client: Any, sessions: Any, settings: Settings, req: RunRequest) -> tuple[str, float]:
    started = time.monotonic()
    handle = await start_run(client, sessions, req, settings.task_queue)
    await handle.result()
    return handle.id.rsplit("/", 1)[0], time.monotonic() - started


def cell_step(sessions: Any, run_id: str) -> Any:
    with sessions() as s:
        return find_step(s, root_id(run_id), 1, "cell", 0)


def leaf_span_ms(sessions: Any, run_id: str) -> list[float]:
    """Each leaf node's life in the store, first write to finish: the leaf call's own work."""
    with sessions() as s:
        return [
            (node.finished_at - node.created_at).total_seconds() * 1000
            for node in list_nodes(s, run_id)
            if node.kind == "leaf" and node.finished_at is not None
        ]


def leaf_model_ms(sessions: Any, run_id: str) -> list[float]:
    out: list[float] = []
    with sessions() as s:
        for row in run_tree(sessions, run_id):
            if row.kind == "leaf":
                out += [float(st.duration_ms or 0) for st in list_steps(s, row.node_id)]
    return out


async def overhead(
    client: Any,
    sessions: Any,
    settings: Settings,
    tmp: Path,
    n: int,
    server_pid: int | None,
    leaf_mode: str,
) -> dict[str, Any]:
    path, expected = words(tmp / "overhead.txt", n * 20)
    req = RunRequest(
        "How many times does the word 'ERROR' appear?",
        path,
        model=f"scripted/mapreduce?chunks={n}&parallel=0",
        sub_model="scripted/leaf",
        limits=Limits(leaf_mode=LeafMode(leaf_mode), max_subcalls=n, max_concurrency=1),
        deadline_s=3600,
    )
    cpu = CpuMeter(server_pid)
    run_id, wall = await run_one(client, sessions, settings, req)
    cpu_ms = cpu.per_call_ms(n)
    step = cell_step(sessions, run_id)
    found = ROUND_TRIP.search((step.data or {}).get("stdout", ""))
    if found is None:
        raise RuntimeError(f"no round-trip timing in the cell output: {(step.data or {}).get('stdout')!r}")
    p50, p95 = float(found.group(1)), float(found.group(2))
    model = leaf_model_ms(sessions, run_id)
    model_p50 = statistics.median(model)
    span_p50 = statistics.median(leaf_span_ms(sessions, run_id))
    summary = run_summary(sessions, run_id)
    return {
        "subcalls": int(found.group(3)),
        "answer_ok": summary.answer == str(expected),
        "roundtrip_ms_p50": p50,
        "roundtrip_ms_p95": p95,
        "leaf_model_ms_p50": model_p50,
        "overhead_ms_p50": round(p50 - model_p50, 2),
        "overhead_ms_p95": round(p95 - model_p50, 2),
        # Where the overhead sits: the leaf's store work around the model call, and the rest of the
        # round trip (sandbox bridge, Update, workflow tasks, local activity dispatch).
        "leaf_store_ms_p50": round(span_p50 - model_p50, 2),
        "temporal_path_ms_p50": round(p50 - span_p50, 2),
        "run_wall_s": round(wall, 2),
        **cpu_ms,
    }


async def fanout(
    client: Any,
    sessions: Any,
    settings: Settings,
    tmp: Path,
    n: int,
    latency_ms: int,
    server_pid: int | None,
    leaf_mode: str,
) -> dict[str, Any]:
    path, expected = words(tmp / "fanout.txt", n * 20)
    concurrency = 16
    req = RunRequest(
        "How many times does the word 'ERROR' appear?",
        path,
        model=f"scripted/mapreduce?chunks={n}",
        sub_model=f"scripted/leaf?latency_ms={latency_ms}",
        limits=Limits(leaf_mode=LeafMode(leaf_mode), max_subcalls=n, max_concurrency=concurrency),
        deadline_s=3600,
    )
    cpu = CpuMeter(server_pid)
    run_id, wall = await run_one(client, sessions, settings, req)
    cpu_ms = cpu.per_call_ms(n)
    step = cell_step(sessions, run_id)
    ideal = n / concurrency * latency_ms / 1000
    cell_s = (step.duration_ms or 0) / 1000
    summary = run_summary(sessions, run_id)
    # What each sub-call added to the root's history: the node's room for sub-calls counts on it
    # (orchestrator/workflows/history_room.py).
    history = await client.get_workflow_handle(root_id(run_id)).fetch_history()
    return {
        "subcalls": n,
        "latency_ms": latency_ms,
        "concurrency": concurrency,
        "answer_ok": summary.answer == str(expected),
        "cell_wall_s": round(cell_s, 2),
        "ideal_s": ideal,
        "ratio": round(cell_s / ideal, 3),
        "run_wall_s": round(wall, 2),
        "root_history_events_per_subcall": round(len(history.events) / n, 2),
        "root_history_bytes_per_subcall": round(sum(e.ByteSize() for e in history.events) / n),
        **cpu_ms,
    }


async def tree(
    client: Any, sessions: Any, settings: Settings, tmp: Path, width: int, leaves: int, leaf_mode: str
) -> dict[str, Any]:
    path, expected = words(tmp / "tree.txt", width * leaves * 20)
    req = RunRequest(
        "How many times does the word 'ERROR' appear?",
        path,
        model=f"scripted/recurse?chunks={width}",
        sub_model=f"scripted/mapreduce?chunks={leaves}",
        limits=Limits(leaf_mode=LeafMode(leaf_mode), max_depth=1, max_subcalls=max(width, leaves)),
        deadline_s=3600,
    )
    run_id, wall = await run_one(client, sessions, settings, req)
    summary = run_summary(sessions, run_id)
    return {
        "nodes": summary.nodes,
        "answer_ok": summary.answer == str(expected),
        "run_wall_s": round(wall, 2),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-subcalls-"))
    try:
        return await measure(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    url = args.database_url or f"sqlite:///{tmp / 'rlm.sqlite3'}"
    fast = args.dispatch == "fast"
    dynamic = dict(FAST_DISPATCH) if fast else {}
    pragmas = SQLITE_PRAGMAS if fast else ()
    options = WorkerOptions(
        max_cached_workflows=args.max_cached_workflows, model_calls=ModelCalls(args.model_calls)
    )
    modes = args.leaf_modes.split(",")
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    result: dict[str, Any] = {
        "config": {
            "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
            "backend": args.backend,
            "database": url.split(":", 1)[0],
            "dispatch": args.dispatch,
            "max_cached_workflows": args.max_cached_workflows,
            "leaf_modes": modes,
            "model_calls": args.model_calls,
            "cpus": os.cpu_count(),
        }
    }
    if "dispatch" in args.scenarios:
        result["dispatch"] = {
            "server_default": await dispatch(tmp, fast=False, cached=True),
            "server_default_uncached": await dispatch(tmp, fast=False, cached=False),
            "fast_dispatch": await dispatch(tmp, fast=True, cached=True),
            "fast_dispatch_uncached": await dispatch(tmp, fast=True, cached=False),
        }
        print("dispatch", result["dispatch"], file=sys.stderr)
    if not {"overhead", "fanout", "tree"} & set(args.scenarios.split(",")):
        return result
    with DevServer(
        DevServerConfig(data_dir=tmp / "temporal", ui=False, dynamic_config=dynamic, sqlite_pragmas=pragmas)
    ) as server:
        settings = replace(
            load_settings({**os.environ, "RLM_DATA_DIR": str(tmp), "RLM_DATABASE_URL": url}),
            temporal_address=server.address,
            sandbox_backend=args.backend,
        )
        client = await Client.connect(server.address)
        async with running_worker(client, settings, options):
            for scenario in ("overhead", "fanout", "tree"):
                if scenario not in args.scenarios:
                    continue
                result[scenario] = {}
                for mode in modes:
                    if scenario == "overhead":
                        figures = await overhead(
                            client, sessions, settings, tmp, args.subcalls, server.pid, mode
                        )
                    elif scenario == "fanout":
                        figures = await fanout(
                            client, sessions, settings, tmp, args.fanout, 200, server.pid, mode
                        )
                    else:
                        figures = await tree(client, sessions, settings, tmp, 10, args.tree_leaves, mode)
                    result[scenario][mode] = figures
                    print(scenario, mode, figures, file=sys.stderr)
    engine.dispose()
    return result


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--backend", choices=["docker", "process"], default="docker")
    p.add_argument("--database-url", default=None)
    p.add_argument("--scenarios", default="dispatch,overhead,fanout,tree")
    p.add_argument("--subcalls", type=int, default=500)
    p.add_argument("--fanout", type=int, default=1000)
    p.add_argument("--tree-leaves", type=int, default=100)
    p.add_argument(
        "--dispatch",
        choices=["fast", "default"],
        default="fast",
        help="dev-server dynamic config: one task-queue partition (fast) or the server default",
    )
    p.add_argument(
        "--leaf-modes",
        default=f"{LeafMode.WORKFLOW},{LeafMode.INLINE}",
        help="comma-separated leaf modes: workflow (Leaf child workflows), inline (local activities), auto",
    )
    p.add_argument(
        "--model-calls",
        choices=[ModelCalls.PROCESS, ModelCalls.WORKER],
        default=ModelCalls.PROCESS,
        help="the worker's model calls in a child process (what `rlm dev` and `rlm worker` do) or in it",
    )
    p.add_argument("--max-cached-workflows", type=int, default=WorkerOptions().max_cached_workflows)
    p.add_argument("--quick", action="store_true", help="100 sub-calls, 200-way fan-out, 10x20 tree")
    args = p.parse_args()
    if args.quick:
        args.subcalls, args.fanout, args.tree_leaves = 100, 200, 20
    return args


if __name__ == "__main__":
    from orchestrator.logs import configure_logging

    configure_logging("warning")  # on stderr: stdout carries the RESULT line only
    res = asyncio.run(main(parse()))
    print("RESULT " + json.dumps(res, sort_keys=True))
