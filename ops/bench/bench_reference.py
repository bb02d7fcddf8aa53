"""Side by side with the reference implementation: durable-rlm against PyPI ``rlms`` on its own tasks.

Both engines talk to one scripted OpenAI-compatible model (``orchestrator.llm.openai_server``, served
from this process on a thread), which writes the same programs for both; each run is a whole process,
from the shell command to the answer (interpreter, imports, run, exit):

- reference: ``rlms`` (pinned below) in its fastest mode, the in-process ``local`` REPL, from a small
  driver run with the python of its own virtualenv (made under the data directory on first use);
- durable-rlm warm: ``rlm run`` against a running ``rlm dev`` (``TEMPORAL_ADDRESS`` set), default
  settings;
- durable-rlm cold: ``rlm run`` with its embedded server, started and stopped by that command.

Tasks: a needle in 1M and 10M characters ("What is the magic number?", one ``re.search``), and a count
over 2,000 and 20,000 labelled records through 10 / 100 ``llm_query_batched`` sub-calls; each at 0 and
500 ms of model latency. The engines run alternately (the order rotates every repetition); every answer
is checked and a wrong one fails the benchmark. Prints a table of medians with the ratio durable-rlm /
reference per row, then ``RESULT {json}`` as its last line.

Each row also gives the CPU seconds each engine's processes used per run (medians), to show what
bounds it: the command's own process tree (the reference's interpreter; ``rlm run`` and, cold, its
embedded server and worker) and, warm, the ``rlm dev`` process tree during the run (its worker, its
Temporal server, the process it forks for the command). Not counted, for either: the sandbox
containers (durable-rlm's cells) and the scripted model's server, which both engines share. Two
cores give at most twice the wall time: a run whose CPU comes near that waits on the CPU, not on
its model.

Usage: ``python ops/bench/bench_reference.py [--reps 3] [--quick]``; durable-rlm's environment
(``RLM_LEAF_MODE``, ``RLM_SANDBOX_BACKEND``, ...) passes through to ``rlm`` except the store and the
models: each mode gets a fresh SQLite store in its own data directory.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from figures import tree_cpu_s

from orchestrator.datadir import default_data_dir
from orchestrator.llm.openai_server import ScriptedServer, ServerConfig
from orchestrator.logs import configure_logging
from orchestrator.vocabulary import LeafMode

REFERENCE_PIN = "rlms==0.1.3"
REFERENCE, WARM, COLD = "reference", "warm", "cold"
MODES = (REFERENCE, WARM, COLD)
# Prices the durable-rlm stores give the served models (USD per token): they are not in litellm's map.
PRICE_IN, PRICE_OUT = Decimal("2.5e-7"), Decimal("2e-6")
RUN_TIMEOUT_S = 900.0
NEEDLE = "4817305"
# Part of the cached task files' names: change it with what write_task writes.
TASKS_VERSION = "v1"

DRIVER = '''"""Runs the reference implementation once: prints the answer alone on stdout."""
import sys

from rlm import RLM

model, base_url, context_path, query = sys.argv[1:5]
with open(context_path, encoding="utf-8") as f:
    context = f.read()
rlm = RLM(
    backend="openai",
    backend_kwargs={"model_name": model, "base_url": base_url, "api_key": "bench"},
    environment="local",
)
print(rlm.completion(context, root_prompt=query).response)
'''


@dataclass(frozen=True)
class Task:
    name: str
    policy: str
    size: int  # characters (needle) or records (count)
    chunks: int = 0

    def query(self) -> str:
        if self.policy == "search":
            return "What is the magic number?"
        return f"How many records match /label=urgent;/? Use {self.chunks} chunks."


TASKS = (
    Task("needle_1m", "search", 1_000_000),
    Task("needle_10m", "search", 10_000_000),
    Task("count_2k", "mapreduce", 2_000, chunks=10),
    Task("count_20k", "mapreduce", 20_000, chunks=100),
)
_WORDS = ("alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta", "river", "ember")
_LABELS = ("urgent", "routine", "billing", "spam")


def write_task(task: Task, directory: Path) -> tuple[Path, str]:
    """The task's context file (made once, then reused) and its expected answer."""
    rng = random.Random(f"{task.name}-7")
    path = directory / f"{task.name}-{TASKS_VERSION}.txt"
    if task.policy == "search":
        expected = NEEDLE
        if not path.exists():
            words = rng.choices(_WORDS, k=task.size // 5)
            lines = [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
            text = "\n".join(lines)[: task.size]
            at = text.find("\n", int(len(text) * 0.61)) + 1
            _write(path, text[:at] + f"The magic number is {NEEDLE}.\n" + text[at:])
    else:
        labels = rng.choices(_LABELS, k=task.size)
        expected = str(labels.count("urgent"))
        if not path.exists():
            notes = [" ".join(rng.choices(_WORDS, k=6)) for _ in range(64)]
            records = (
                f"record {i:06d}; label={label}; note: {notes[i % 64]}" for i, label in enumerate(labels)
            )
            _write(path, "\n".join(records) + "\n")
    return path, expected


def _write(path: Path, text: str) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def reference_python(bench_dir: Path) -> Path:
    """The reference's own virtualenv, made and filled on first use."""
    venv = bench_dir / "reference-venv"
    stamp = venv / "installed.txt"
    python = venv / "bin" / "python"
    if stamp.exists() and stamp.read_text() == REFERENCE_PIN:
        return python
    print(f"installing {REFERENCE_PIN} into {venv} (once)", file=sys.stderr)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", REFERENCE_PIN], check=True)
    stamp.write_text(REFERENCE_PIN)
    return python


def model_name(task: Task, latency_ms: int) -> str:
    return f"{task.policy}?latency_ms={latency_ms}"


def durable_env(data_dir: Path, server_url: str, temporal_address: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "OPENAI_"))}
    for name in ("RLM_DATABASE_URL", "RLM_MODEL", "RLM_SUB_MODEL"):
        env.pop(name, None)
    env.update(
        RLM_DATA_DIR=str(data_dir),
        OPENAI_API_BASE=server_url,
        OPENAI_API_KEY="bench",  # the OpenAI client wants a key; the scripted server checks none
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    if temporal_address is not None:
        env["TEMPORAL_ADDRESS"] = temporal_address
    return env


def prepare_store(data_dir: Path, models: list[str]) -> None:
    from orchestrator.settings import load_settings
    from orchestrator.store import make_engine, make_session_factory, set_price, upgrade

    data_dir.mkdir(parents=True, exist_ok=True)
    url = load_settings({"RLM_DATA_DIR": str(data_dir)}).database_url
    engine = make_engine(url)
    try:
        upgrade(engine)
        with make_session_factory(engine).begin() as session:
            for model in models:
                set_price(session, f"openai/{model}", PRICE_IN, PRICE_OUT)
    finally:
        engine.dispose()


class DevServer:
    """A running ``rlm dev`` of one data directory, for the warm rows."""

    def __init__(self, rlm: Path, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.proc = subprocess.Popen([str(rlm), "dev"], env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        self.address = self._wait_for_address(timeout_s=120.0)

    def _wait_for_address(self, timeout_s: float) -> str:
        marker = "Temporal dev server at "
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            for line in self.log_path.read_text(errors="replace").splitlines():
                if line.startswith(marker):
                    return line.removeprefix(marker).split(";", 1)[0]
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise SystemExit(f"rlm dev did not start within {timeout_s:g} s; the end of its log:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _cpu_s(dev_pid: int | None) -> float:
    """CPU seconds so far of this process's children that have ended and been waited for (and of
    theirs), plus those of the running ``rlm dev``'s process tree when there is one."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + (0.0 if dev_pid is None else tree_cpu_s(dev_pid))


@dataclass(frozen=True)
class Sample:
    wall_s: float
    cpu_s: float
    answer: str
    model_calls: int


@dataclass
class Bench:
    server: ScriptedServer
    server_url: str
    rlm: Path
    ref_python: Path | None
    driver: Path
    envs: dict[str, dict[str, str]]
    dev_pid: int | None = None  # the running ``rlm dev`` of the warm mode

    def run(self, mode: str, task: Task, context: Path, latency_ms: int) -> Sample:
        model = model_name(task, latency_ms)
        env: dict[str, str] | None = None
        if mode == REFERENCE:
            if self.ref_python is None:
                raise SystemExit("the reference is not installed")
            cmd = [str(self.ref_python), str(self.driver), model, self.server_url, str(context), task.query()]
        else:
            cmd = [str(self.rlm), "run", task.query(), "--context", str(context)]
            cmd += ["--model", f"openai/{model}", "--sub-model", f"openai/{model}"]
            env = self.envs[mode]
        # A warm run's work is done in the running `rlm dev` as much as in the command.
        dev = self.dev_pid if mode == WARM else None
        calls, cpu_before, started = self.server.requests, _cpu_s(dev), time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            what = "the reference" if mode == REFERENCE else f"durable-rlm {mode}"
            raise SystemExit(f"{what} on {task.name} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        return Sample(wall, _cpu_s(dev) - cpu_before, proc.stdout.strip(), self.server.requests - calls)


def _seconds(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else "-"


def table(rows: list[dict[str, object]]) -> str:
    head = (
        f"{'task':<11} {'latency':>7} {'mode':<5} {'reference s':>11} {'durable s':>9} {'ratio':>6}"
        f" {'reference CPU s':>15} {'durable CPU s':>13}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if isinstance(r["ratio"], float) else "-"
        lines.append(
            f"{r['task']!s:<11} {r['latency_ms']!s:>5}ms {r['mode']!s:<5} {_seconds(r['reference_s']):>11} "
            f"{_seconds(r['durable_s']):>9} {ratio:>6} {_seconds(r['reference_cpu_s']):>15} "
            f"{_seconds(r['durable_cpu_s']):>13}"
        )
    return "\n".join(lines)


def _per_sample(samples: dict[tuple[str, int, str], list[Sample]], figure: str) -> dict[str, list[float]]:
    return {f"{t} {ms}ms {m}": [round(getattr(s, figure), 3) for s in v] for (t, ms, m), v in samples.items()}


def _median(samples: list[Sample] | None, figure: str) -> float | None:
    return round(statistics.median(getattr(s, figure) for s in samples), 3) if samples else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="one rep of needle_1m and count_2k at 0 ms")
    p.add_argument("--tasks", default=",".join(t.name for t in TASKS))
    p.add_argument("--latencies", default="0,500", help="model latencies in ms, comma-separated")
    p.add_argument("--modes", default=",".join(MODES), help="of reference, warm, cold")
    p.add_argument("--data-dir", type=Path, default=None, help="default: RLM_DATA_DIR or its default")
    args = p.parse_args()
    configure_logging("warning")  # on stderr: stdout carries the table and the RESULT line only
    if args.quick:
        args.reps, args.tasks, args.latencies = 1, "needle_1m,count_2k", "0"
    by_name = {t.name: t for t in TASKS}
    unknown = sorted(set(args.tasks.split(",")) - set(by_name)) + sorted(
        set(args.modes.split(",")) - set(MODES)
    )
    if unknown:
        p.error(
            f"unknown task or mode {', '.join(unknown)}; "
            f"tasks: {', '.join(by_name)}; modes: {', '.join(MODES)}"
        )
    tasks = [by_name[name] for name in args.tasks.split(",")]
    latencies = [int(v) for v in args.latencies.split(",")]
    modes = [m for m in MODES if m in args.modes.split(",")]
    rlm = Path(sys.executable).with_name("rlm")
    if not rlm.exists():
        p.error(f"no rlm beside {sys.executable}: run this with the project's .venv/bin/python")

    load_at_start = os.getloadavg()[0]
    bench_dir = (args.data_dir or default_data_dir(os.environ)) / "bench-reference"
    (bench_dir / "tasks").mkdir(parents=True, exist_ok=True)
    contexts = {t.name: write_task(t, bench_dir / "tasks") for t in tasks}
    ref_python = reference_python(bench_dir) if REFERENCE in modes else None
    driver = bench_dir / "reference_driver.py"
    driver.write_text(DRIVER)
    models = sorted({model_name(t, ms) for t in tasks for ms in latencies})
    work = Path(tempfile.mkdtemp(prefix="run-", dir=bench_dir))
    samples: dict[tuple[str, int, str], list[Sample]] = {}
    calls: dict[tuple[str, str], int] = {}
    dev: DevServer | None = None
    with ScriptedServer(ServerConfig()) as server:
        try:
            envs: dict[str, dict[str, str]] = {}
            for mode in (WARM, COLD):
                if mode in modes:
                    prepare_store(work / mode, models)
                    envs[mode] = durable_env(work / mode, server.url, None)
            if WARM in modes:
                dev = DevServer(rlm, envs[WARM], work / "rlm-dev.log")
                envs[WARM] = durable_env(work / WARM, server.url, dev.address)
            bench = Bench(server, server.url, rlm, ref_python, driver, envs, dev.proc.pid if dev else None)
            # One untimed run of each engine: the worker's first run, and the files in the page cache.
            first = tasks[0]
            for mode in modes:
                bench.run(mode, first, contexts[first.name][0], latencies[0])
            for rep, (task, latency_ms) in itertools.product(
                range(args.reps), itertools.product(tasks, latencies)
            ):
                context, expected = contexts[task.name]
                turn = (rep + tasks.index(task) + latencies.index(latency_ms)) % len(modes)
                for mode in modes[turn:] + modes[:turn]:
                    sample = bench.run(mode, task, context, latency_ms)
                    if sample.answer != expected:
                        raise SystemExit(
                            f"{mode} answered {sample.answer[:200]!r} on {task.name}; expected {expected!r}"
                        )
                    samples.setdefault((task.name, latency_ms, mode), []).append(sample)
                    calls[(task.name, mode)] = sample.model_calls
                    print(
                        f"{task.name} {latency_ms}ms {mode}: {sample.wall_s:.2f} s, "
                        f"CPU {sample.cpu_s:.2f} s, {sample.model_calls} model calls",
                        file=sys.stderr,
                    )
        finally:
            if dev is not None:
                dev.stop()
            shutil.rmtree(work, ignore_errors=True)

    rows: list[dict[str, object]] = []
    for task, latency_ms in itertools.product(tasks, latencies):
        ref = samples.get((task.name, latency_ms, REFERENCE))
        ref_s = _median(ref, "wall_s")
        for mode in (WARM, COLD):
            durable = samples.get((task.name, latency_ms, mode))
            durable_s = _median(durable, "wall_s")
            if durable_s is None:
                continue
            rows.append({
                "task": task.name, "latency_ms": latency_ms, "mode": mode,
                "reference_s": ref_s, "durable_s": durable_s,
                "ratio": round(durable_s / ref_s, 3) if ref_s else None,
                "reference_cpu_s": _median(ref, "cpu_s"), "durable_cpu_s": _median(durable, "cpu_s"),
            })  # fmt: skip
    print(table(rows))
    result = {
        "config": {
            "cpus": os.cpu_count(),
            "load_avg_1m_at_start": round(load_at_start, 2),
            "leaf_mode": os.environ.get("RLM_LEAF_MODE") or f"{LeafMode.AUTO} (default)",
        },
        "reference": REFERENCE_PIN,
        "reps": args.reps,
        "rows": rows,
        "samples_s": _per_sample(samples, "wall_s"),
        "samples_cpu_s": _per_sample(samples, "cpu_s"),
        "model_calls": {f"{t} {m}": n for (t, m), n in calls.items()},
        "answers_ok": True,
    }
    print("RESULT " + json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
