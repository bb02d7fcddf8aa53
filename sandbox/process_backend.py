"""The ``process`` backend: the runtime as a local subprocess with rlimits, for machines without Docker.

NOT A SECURITY BOUNDARY. The code runs as the calling user, with that user's files, network and
processes within reach; only memory (RLIMIT_AS), file size (RLIMIT_FSIZE) and the per-cell timeout are
capped, and there is no pids or CPU cap. Use it for development and tests of trusted code only; the
``docker`` backend is the default and the only one for LLM-written code in production.

Each runtime works in a temporary directory named after its host's pid. A host killed before it could
remove its directories leaves them behind (its runtimes die with it); the first launch of the next host
removes every such directory of the same user whose host is gone.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import structlog

from .api import CellStatus, SandboxLimits
from .bootstrap import runtime_command
from .cell import ExitReason

log = structlog.get_logger("sandbox")

_RUNTIME_PARENT = str(Path(__file__).resolve().parent)
WORKDIR_PREFIX = "rlm-process-sandbox-"


class ProcessRuntime:
    def __init__(self, process: subprocess.Popen[bytes], workdir: tempfile.TemporaryDirectory[str]) -> None:
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
        self._workdir.cleanup()


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
        _sweep_once()
        workdir = tempfile.TemporaryDirectory(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-")
        env = {"PATH": os.defpath, "HOME": workdir.name, "TMPDIR": workdir.name, "LANG": "C.UTF-8"}
        process = subprocess.Popen(
            runtime_command(sys.executable, _RUNTIME_PARENT, "runtime", str(socket_path)),
            cwd=workdir.name,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return ProcessRuntime(process, workdir)


def sweep_workdirs() -> int:
    """Remove the runtimes' working directories whose host process is gone; returns how many.

    Only directories of this user, named by this backend with a host pid, are looked at; a directory
    whose host is alive (or whose pid is now another process's) stays.
    """
    removed = 0
    uid = os.getuid()
    with os.scandir(tempfile.gettempdir()) as entries:
        for entry in entries:
            host = _host_pid(entry.name)
            if host is None or _alive(host):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == uid:
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed += 1
    return removed


@functools.cache
def _sweep_once() -> int:
    removed = sweep_workdirs()
    if removed:
        log.info("sandbox.workdirs_swept", count=removed)
    return removed


def _host_pid(name: str) -> int | None:
    pid, dash, _ = name.removeprefix(WORKDIR_PREFIX).partition("-")
    if not name.startswith(WORKDIR_PREFIX) or not dash or not pid.isdigit() or int(pid) <= 0:
        return None
    return int(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
