"""The temporary directories a host process keeps for its runtimes, and the removal of those a killed
host left behind.

A runtime's control socket (until the runtime connects) and a ``process``-backend runtime's working
directory live in directories ``<kind><random>`` of the temporary directory, each holding a ``.host``
file with its host's pid namespace and pid; the host removes them itself. A host killed first cannot, so
the first directory a process makes removes every directory of either kind, of this user, whose host is
gone. Only hosts of the same pid namespace are judged: workers in containers that share a ``TMPDIR`` each
have their own, where the same pid names another process. The owner is a file, not part of the name,
because the control socket's path must stay within the 107 bytes a unix socket address holds.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from pathlib import Path

import structlog

from .pids import alive

log = structlog.get_logger("sandbox")

CONTROL = "rlm-sandbox-"
WORKDIR = "rlm-process-sandbox-"
_KINDS = (CONTROL, WORKDIR)
HOST_FILE = ".host"
# Where the pid namespace cannot be read, no directory is judged.
_UNKNOWN_NAMESPACE = "unknown"


def make(kind: str) -> Path:
    """A new directory of ``kind`` (``CONTROL`` or ``WORKDIR``), private to this user."""
    _sweep_once()
    directory = Path(tempfile.mkdtemp(prefix=kind))
    (directory / HOST_FILE).write_text(f"{namespace()} {os.getpid()}\n")
    return directory


def sweep() -> int:
    """Remove the directories whose host, in this pid namespace, is gone; returns how many."""
    mine = namespace()
    if mine == _UNKNOWN_NAMESPACE:
        return 0
    removed = 0
    uid = os.getuid()
    with os.scandir(tempfile.gettempdir()) as entries:
        for entry in entries:
            if not entry.name.startswith(_KINDS):
                continue
            with contextlib.suppress(OSError):
                if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                host = _host(Path(entry.path) / HOST_FILE)
                # No file yet: its host is between making the directory and writing it.
                if host is None or host[0] != mine or alive(host[1]):
                    continue
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
    return removed


@functools.cache
def namespace() -> str:
    """This process's pid namespace (its inode number), in which host pids are compared."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return _UNKNOWN_NAMESPACE


@functools.cache
def _sweep_once() -> None:
    removed = sweep()
    if removed:
        log.info("sandbox.host_dirs_swept", count=removed)


def _host(path: Path) -> tuple[str, int] | None:
    """The pid namespace and pid a ``.host`` file names, if it is one."""
    try:
        ns, pid = path.read_text().split()
    except (OSError, ValueError):
        return None
    if not pid.isdigit() or int(pid) <= 0:
        return None
    return ns, int(pid)
