"""One embedded Temporal server per data directory: an OS lock on the directory, and who holds it.

Two dev servers on one SQLite file fail each other's requests, so the process that starts the embedded
server first takes an exclusive ``flock`` on ``server.lock`` in the server's data directory, then writes
beside it, in ``server.json``, who holds it: its pid, the server's pid, address and Web UI, and whether
it is a shared ``rlm dev`` that the other commands of that data directory use instead of starting their
own server.

The server process inherits the locked descriptor, so the lock lasts while either of them lives and the
kernel releases it when both are gone, whatever killed them: a lock is never stale. A holder killed
while its server lives on (``kill -9`` of the CLI) leaves a server nobody will stop; the next claimant
stops that server, then takes the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from orchestrator.errors import RlmError
from sandbox.pids import alive

log = structlog.get_logger(__name__)

LOCK_FILE = "server.lock"
HOLDER_FILE = "server.json"
ORPHAN_STOP_S = 15.0


@dataclass(frozen=True)
class Holder:
    """What ``server.json`` says about the process serving a data directory."""

    pid: int  # the rlm process that started the server
    address: str
    ui_url: str | None
    shared: bool  # an `rlm dev`: other commands of the data directory use its server
    data_dir: str
    server_pid: int | None = None
    ready: bool = False


class DataDirBusy(RlmError):
    """Another process serves the data directory; the message says which and what to do."""

    def __init__(self, data_dir: Path, holder: Holder | None, waited_s: float = 0.0) -> None:
        self.holder = holder
        if holder is None:
            message = (
                f"the Temporal data directory {data_dir} is locked ({data_dir / LOCK_FILE}) by a process "
                f"that did not publish a server within {waited_s:.0f} s; find it with "
                f"`fuser {data_dir / LOCK_FILE}`, or set TEMPORAL_ADDRESS"
            )
        elif holder.shared:
            message = (
                f"the Temporal data directory {data_dir} is already served by `rlm dev` (pid {holder.pid}) "
                f"at {holder.address}; use that one (rlm commands of this data directory do) or stop it first"
            )
        else:
            message = (
                f"the Temporal data directory {data_dir} is in use by the embedded server of another "
                f"`rlm run` (pid {holder.pid}); start `rlm dev` in another shell so that every rlm command "
                "of this data directory shares one server, set TEMPORAL_ADDRESS, or wait for that run to end"
            )
        super().__init__(message)


class DataDirLock:
    """The held lock: its descriptor (passed on to the server process) and the holder file beside it."""

    def __init__(self, directory: Path, fd: int) -> None:
        self.directory = directory
        self._fd: int | None = fd

    def fileno(self) -> int:
        if self._fd is None:
            raise ValueError("the data-directory lock was released")
        return self._fd

    def publish(self, holder: Holder) -> None:
        # Written whole and renamed, so a reader never sees half a file.
        tmp = self.directory / f".{HOLDER_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(asdict(holder)))
        tmp.replace(self.directory / HOLDER_FILE)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # The holder file goes first, while the lock still keeps other claimants out.
        with contextlib.suppress(FileNotFoundError):
            (self.directory / HOLDER_FILE).unlink()
        os.close(fd)


def read_holder(directory: Path) -> Holder | None:
    try:
        raw = json.loads((directory / HOLDER_FILE).read_text())
        return Holder(**raw)
    except (OSError, ValueError, TypeError):
        return None


def claim(directory: Path, wait_s: float) -> DataDirLock | Holder:
    """The lock when no live process serves ``directory`` (the caller may start the server), else the
    holder once its server is ready. A holder still starting is waited for, up to ``wait_s``."""
    directory.mkdir(parents=True, exist_ok=True)
    end = time.monotonic() + wait_s
    while True:
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
        else:
            lock = DataDirLock(directory, fd)
            # Whatever the file says was written by a holder that is gone.
            with contextlib.suppress(FileNotFoundError):
                (directory / HOLDER_FILE).unlink()
            return lock
        holder = read_holder(directory)
        if holder is not None and not alive(holder.pid):
            stop_orphan(holder)
        elif holder is not None and holder.ready:
            return holder
        if time.monotonic() >= end:
            raise DataDirBusy(directory, holder, wait_s)
        time.sleep(0.2)


def probe(directory: Path, wait_s: float) -> Holder | None:
    """The live holder of ``directory``, or None when nobody serves it (nothing is started)."""
    claimed = claim(directory, wait_s)
    if isinstance(claimed, DataDirLock):
        claimed.release()
        return None
    return claimed


def stop_orphan(holder: Holder) -> None:
    """Stop the server a dead holder left running on its data directory (it holds the lock)."""
    pid = holder.server_pid
    if pid is None or not alive(pid):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return
    # A pid reused by some other process is left alone.
    if holder.data_dir not in cmdline:
        return
    log.warning("devstack.orphan_stopped", server_pid=pid, holder_pid=holder.pid, data_dir=holder.data_dir)
    # The server was started in its own session: its process group is the server and its children.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        end = time.monotonic() + ORPHAN_STOP_S
        while time.monotonic() < end and alive(pid):
            time.sleep(0.1)
        if not alive(pid):
            return
