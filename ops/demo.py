"""The main job, for real: an RLM counts ERROR lines in a generated multi-megabyte log with 50 sub-calls.

It drives the `rlm` command line the way an operator would: make sure the tenant exists, run the query
(embedded Temporal dev server, Docker sandbox, the store), print the answer, the recursion tree and the
spend, and check the answer against the count known from generating the log. The model is the scripted
stand-in (see README: "The scripted model"); set DEMO_MODEL / DEMO_SUB_MODEL to use a real one.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.settings import load_settings

TENANT = "demo"
TENANT_BUDGET_USD = "5"
CHUNKS = 50
LINES = 60_000
LEVELS = ("INFO", "DEBUG", "WARN", "ERROR")
LEVEL_WEIGHTS = (70, 15, 10, 5)


def write_log(path: Path, seed: int = 7) -> int:
    """Write a synthetic service log; return how many lines are at level ERROR."""
    rng = random.Random(seed)
    errors = 0
    with path.open("w") as out:
        for i in range(LINES):
            level = rng.choices(LEVELS, LEVEL_WEIGHTS)[0]
            errors += level == "ERROR"
            out.write(
                f"2026-11-21T10:{i % 60:02d}:{i * 7 % 60:02d} {level} svc-{rng.randint(1, 40)} "
                f"request {rng.randint(1000, 999_999)} took {rng.randint(1, 900)}ms\n"
            )
    return errors


def rlm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "rlm"), *args]
    proc = subprocess.run(command, text=True, capture_output=True, check=False)
    if check and proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"demo: `rlm {' '.join(args[:2])} …` failed with exit code {proc.returncode}")
    return proc


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def main() -> None:
    settings = load_settings()
    work = settings.data_dir / "demo"
    work.mkdir(parents=True, exist_ok=True)
    context = work / "service.log"
    expected = write_log(context)
    # The sandbox runs as an unprivileged user; it must be able to read the context it is handed.
    context.chmod(0o644)
    run_id = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    query = f"How many times does the word 'ERROR' appear? Use {CHUNKS} chunks."

    section("setup")
    print(f"context  {context} ({context.stat().st_size / 1e6:.1f} MB, {LINES} lines)")
    print(f"store    {settings.database_url}")
    if rlm("tenant", "show", TENANT, check=False).returncode != 0:
        rlm("tenant", "create", TENANT, "--budget-usd", TENANT_BUDGET_USD)
    print(f"tenant   {TENANT} (budget ${TENANT_BUDGET_USD})")

    section(f"rlm run {query!r}")
    model = os.environ.get("DEMO_MODEL", "scripted/mapreduce")
    sub_model = os.environ.get("DEMO_SUB_MODEL", "scripted/leaf?latency_ms=50")
    run = rlm(
        "run", query, "--context", str(context), "--tenant", TENANT, "--run-id", run_id,
        "--model", model, "--sub-model", sub_model, "--budget-usd", "1",
    )  # fmt: skip
    print(run.stdout.rstrip())
    # The answer is rlm run's stdout; its summary (status, cost, tokens, nodes, wall time) is on stderr.
    print("\n".join(line for line in run.stderr.splitlines() if line.startswith("status ")))

    section(f"rlm tree {run_id}")
    print(rlm("tree", run_id).stdout.rstrip())
    section(f"rlm tenant show {TENANT}")
    print(rlm("tenant", "show", TENANT).stdout.rstrip())

    answer = run.stdout.strip().splitlines()[0] if run.stdout.strip() else ""
    section("check")
    if model.startswith("scripted/") and answer != str(expected):
        raise SystemExit(
            f"demo: the answer {answer!r} is not the {expected} ERROR lines the log was made with"
        )
    print(f"answer {answer} = {expected} ERROR lines written to the log")
    print(
        "\nThe Web UI: run `rlm dev` (Temporal dev server + Web UI + worker, same data directory),\n"
        f'open the URL it prints and filter workflows with  RlmRunId = "{run_id}"  to see the tree.'
    )


if __name__ == "__main__":
    main()
