"""Figures the benchmarks share: CPU seconds of the worker and the dev server, percentiles."""

from __future__ import annotations

import os
import time
from pathlib import Path


class CpuMeter:
    """CPU seconds of this process (the worker) and of the dev server process, between two readings."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.started = self.read()

    def read(self) -> tuple[float, float]:
        server = 0.0
        if self.server_pid is not None:
            # /proc/<pid>/stat: utime and stime are fields 14 and 15, after the "(comm)" field.
            fields = Path(f"/proc/{self.server_pid}/stat").read_text().rsplit(")", 1)[1].split()
            server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return time.process_time(), server

    def per_call_ms(self, calls: int) -> dict[str, float]:
        worker, server = self.read()
        return {
            "worker_cpu_ms_per_subcall": round((worker - self.started[0]) * 1000 / calls, 1),
            "server_cpu_ms_per_subcall": round((server - self.started[1]) * 1000 / calls, 1),
        }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
