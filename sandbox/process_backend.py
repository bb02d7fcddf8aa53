"""The ``process`` backend: the runtime as a local subprocess with rlimits, for machines without Docker.

NOT A SECURITY BOUNDARY. The code runs as the calling user, with that user's files, network and
processes within reach; only memory (RLIMIT_AS), file size (RLIMIT_FSIZE) and the per-cell timeout are
capped, and there is no pids or CPU cap. Use it for development and tests of trusted code only; the
``docker`` backend is the default and the only one for LLM-written code in production.

Each runtime works in a temporary directory of its own (``hostdirs.WORKDIR``), removed with it; one that a
killed host left behind goes at the next host's first launch.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import hostdirs
from .api import CellStatus, SandboxLimits
from .bootstrap import runtime_command
from .cell import ExitReason

_RUNTIME_PARENT = str(Path(__file__).resolve().parent)


class ProcessRuntime:
    def __init__(self, process: subprocess.Popen[bytes], workdir: Path) -> None:
        self._process = process
        self._workdir = workdir
        self.ident = str(process.pid)

    def alive(self) -> bool:
        return self._process.poll() is None

    def exit_reason(self, wait_s: float) -> tuple[ExitReason, str]:
        try:
            code = self._process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            return CellStatus.CRASHED, "the runtime closed the control channel but kept running"
        return CellStatus.CRASHED, f"process exited with code {code}"

    def kill(self) -> None:
        # The runtime leads its own process group, so this also ends whatever the cell forked.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
        shutil.rmtree(self._workdir, ignore_errors=True)


class ProcessLauncher:
    backend = "process"

    def __init__(self, context_path: Path | None, limits: SandboxLimits) -> None:
        self._context = context_path
        self._limits = limits

    def init_message(self) -> dict[str, Any]:
        return {
            "context": None if self._context is None else str(self._context),
            "exit_with_parent": True,
            "rlimits": {
                "RLIMIT_AS": self._limits.memory_bytes,
                "RLIMIT_FSIZE": self._limits.tmpfs_bytes,
                "RLIMIT_CORE": 0,
            },
        }

    def close(self) -> None:
        """Nothing to release: each runtime owns its process and working directory."""

    def launch(self, socket_path: Path) -> ProcessRuntime:
        workdir = hostdirs.make(hostdirs.WORKDIR)
        env = {"PATH": os.defpath, "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8"}
        try:
            process = subprocess.Popen(
                runtime_command(sys.executable, _RUNTIME_PARENT, "runtime", str(socket_path)),
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return ProcessRuntime(process, workdir)
