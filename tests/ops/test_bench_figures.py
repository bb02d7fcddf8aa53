"""The benchmarks' CPU figure for a process tree (ops/bench/figures.py: tree_cpu_s), which
bench_reference.py reads around each warm run of a long-lived ``rlm dev``: it must count the process,
the children it has waited for, and its live descendants."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

FIGURES = Path(__file__).resolve().parents[2] / "ops" / "bench" / "figures.py"
BURN_S = 0.5

# A process that burns BURN_S of CPU itself, in a child it waits for, and in a child it leaves running.
TREE = textwrap.dedent(
    f"""
    import subprocess, sys, time
    BURN = "import time\\nend = time.process_time() + {BURN_S}\\nwhile time.process_time() < end: pass\\n"
    subprocess.run([sys.executable, "-c", BURN], check=True)
    live = subprocess.Popen(
        [sys.executable, "-c", BURN + "print('burnt', flush=True)\\ntime.sleep(120)"], stdout=subprocess.PIPE
    )
    live.stdout.readline()
    exec(BURN)
    print("ready", flush=True)
    time.sleep(120)
    """
)


def figures_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_figures", FIGURES)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_trees_cpu_counts_the_process_its_waited_children_and_its_live_descendants() -> None:
    figures = figures_module()
    proc = subprocess.Popen(
        [sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        cpu = figures.tree_cpu_s(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # Three burns plus three interpreters' start; leaving out either kind of child loses a whole burn.
    assert cpu >= 3 * BURN_S - 0.05, cpu
    assert cpu < 3 * BURN_S + 3.0, cpu
