"""The temporary directories a host process keeps for its runtimes, and the removal of those a killed
host left behind.

A runtime's control socket (until the runtime connects) and a ``process``-backend runtime's working
directory live in directories named ``<kind><pid namespace>-<host pid>-<random>`` in the temporary
directory; the host removes them itself. A host killed first cannot, so the first directory a process
makes removes every directory of either kind, of this user, whose host is gone. Only hosts of the same
pid namespace are judged: workers in containers that share a ``TMPDIR`` each have their own, where the
same pid names another process.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from pathlib import Path

import structlog

log = structlog.get_logger("sandbox")

CONTROL = "rlm-sandbox-"
WORKDIR = "rlm-process-sandbox-"
_KINDS = (CONTROL, WORKDIR)
# Written where the pid namespace cannot be read: such directories are never judged.
_UNKNOWN_NAMESPACE = "unknown"


def make(kind: str) -> Path:
    """A new directory of ``kind`` (``CONTROL`` or ``WORKDIR``), private to this user."""
    _sweep_once()
    return Path(tempfile.mkdtemp(prefix=f"{kind}{namespace()}-{os.getpid()}-"))


def sweep() -> int:
    """Remove the directories whose host, in this pid namespace, is gone; returns how many."""
    mine = namespace()
    if mine == _UNKNOWN_NAMESPACE:
        return 0
    removed = 0
    uid = os.getuid()
    with os.scandir(tempfile.gettempdir()) as entries:
        for entry in entries:
            host = _host(entry.name)
            if host is None or host[0] != mine or _alive(host[1]):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == uid:
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


def _host(name: str) -> tuple[str, int] | None:
    """The pid namespace and pid of the host that made the directory ``name``, if one of ours made it."""
    for kind in _KINDS:
        if name.startswith(kind):
            parts = name.removeprefix(kind).split("-")
            if len(parts) == 3 and parts[1].isdigit() and int(parts[1]) > 0:
                return parts[0], int(parts[1])
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
