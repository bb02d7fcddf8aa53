"""Figures the benchmarks share: CPU seconds of the worker, the dev server and process trees, percentiles."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path


class CpuMeter:
    """CPU seconds of this process (the worker), of its model-call process if it has one, and of the dev
    server process, between two readings."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.started = self.read()

    def read(self) -> tuple[float, float, float]:
        server = _cpu_s(self.server_pid) if self.server_pid is not None else 0.0
        calls = sum(_cpu_s(pid) for pid in _model_call_processes())
        return time.process_time(), calls, server

    def per_call_ms(self, calls: int) -> dict[str, float]:
        now = self.read()
        worker, model_calls, server = (
            round((b - a) * 1000 / calls, 1) for a, b in zip(self.started, now, strict=True)
        )
        return {
            "worker_cpu_ms_per_subcall": worker,
            "model_calls_cpu_ms_per_subcall": model_calls,
            "server_cpu_ms_per_subcall": server,
        }


def _cpu_s(pid: int) -> float:
    # utime and stime: fields 14 and 15 of the stat line.
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _model_call_processes() -> list[int]:
    """This process's live model-call children (a worker's with ``RLM_MODEL_CALLS=process``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            fields = _stat_fields(int(entry.name))
            if int(fields[1]) == os.getpid() and b"call_process_main" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def _stat_fields(pid: int) -> list[str]:
    # /proc/<pid>/stat after the "(comm)" field, which may itself hold spaces and parentheses.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process, of the children it has waited for, and of its live descendants (and
    theirs): for a process tree that outlives the measurement, its CPU between two readings."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            # A process that ended meanwhile: its parent has its time, or will once it waits for it.
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                stats[int(entry.name)] = _stat_fields(int(entry.name))
    children: dict[int, list[int]] = {}
    for child, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(child)
    ticks, todo = 0, [pid]
    while todo:
        current = todo.pop()
        # utime, stime, cutime, cstime: fields 14-17 of the stat line.
        ticks += sum(int(v) for v in stats.get(current, [])[11:15])
        todo.extend(children.get(current, []))
    return ticks / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
