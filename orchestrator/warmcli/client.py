"""The client half of the warm CLI: hand a short-lived ``rlm`` command to `rlm dev`'s warm process.

Standard library only, and imported before anything else: a command that runs here costs an interpreter
start and one socket exchange instead of the 0.5 s of imports (SQLAlchemy, Temporal's client, structlog)
a fresh ``rlm run`` pays before its first statement. The command itself runs unchanged in a process
forked from the warm one, on this process's stdin, stdout and stderr (passed over the socket), with its
arguments, environment, working directory and umask, so its output, exit code and errors are those of a
command run here. SIGINT, SIGTERM and SIGHUP are passed on to it; if this process dies, it gets SIGTERM.

Whatever does not fit (no `rlm dev` for the data directory, another interpreter or install, a stdio
stream that is closed) returns ``None`` and the command runs in this process.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import socket
import struct
import sys
from collections.abc import Mapping, Sequence
from types import FrameType

from orchestrator.datadir import default_data_dir

# The request: a 4-byte big-endian length, then that many bytes of JSON; stdin, stdout and stderr ride
# along as SCM_RIGHTS. Replies are JSON lines: {"pid": N} then {"exit": CODE}, or {"refused": WHY}.
LENGTH = struct.Struct(">I")
MAX_REQUEST = 1 << 20
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
# A warm process accepts at once; one that does not (stopped, its backlog full) is not waited for.
CONNECT_TIMEOUT_S = 2.0
# The packages whose code a handed command runs.
SOURCE_PACKAGES = ("orchestrator", "sandbox")


def address(data_dir: os.PathLike[str] | str, uid: int) -> bytes:
    """The warm process's socket, in the abstract namespace (no file to leave behind, no path limit):
    one per data directory and user. Both ends check the other's uid, since anyone can bind a name."""
    key = f"{os.path.realpath(data_dir)}\0{uid}".encode()
    return b"\0durable-rlm-cli-" + hashlib.sha256(key).hexdigest()[:32].encode()


def install() -> str:
    """What makes the warm process's code and text handling this process's: the interpreter, the
    package and its source as it is now, and the file-name encoding the interpreter chose at its start."""
    package = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    return "\0".join(
        (
            sys.prefix,
            sys.executable,
            package,
            source_stamp(os.path.dirname(package)),
            sys.getfilesystemencoding(),
            str(sys.flags.utf8_mode),
        )
    )


def source_stamp(root: str) -> str:
    """A digest of the engine's source files' paths, sizes and modification times: an upgrade or an edit
    while `rlm dev` runs makes its warm process, which runs the code it imported, another install. A walk
    of some 150 files' metadata (``root`` holds the packages): about half a millisecond."""
    files: list[str] = []
    pending = [os.path.join(root, name) for name in SOURCE_PACKAGES]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.name.endswith(".py"):
                meta = entry.stat(follow_symlinks=False)
                files.append(f"{entry.path}\0{meta.st_size}\0{meta.st_mtime_ns}")
            elif entry.name != "__pycache__" and entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
    return hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()[:32]


def peer_uid(sock: socket.socket) -> int:
    _, uid, _ = PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED.size))
    return int(uid)


def hand_off(argv: Sequence[str], env: Mapping[str, str] = os.environ) -> int | None:
    """The exit code of ``rlm ARGV`` (a command of ``HANDED``) run by `rlm dev`'s warm process, or None:
    run it here."""
    if any(k.startswith("_") and k.endswith("_COMPLETE") for k in env):
        return None  # shell completion: Typer's, in this process
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
    except OSError:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT_S)
        sock.connect(address(default_data_dir(env), os.getuid()))
        if peer_uid(sock) != os.getuid():
            sock.close()
            return None
        sock.settimeout(None)
        if not _send(sock, argv, env):
            sock.close()
            return None
    except OSError:
        sock.close()
        return None  # no warm process has the whole request: run it here
    # From here on the command may be running there: never run it here too.
    try:
        return _outcome(sock.makefile("rb"))
    finally:
        sock.close()


def _send(sock: socket.socket, argv: Sequence[str], env: Mapping[str, str]) -> bool:
    """Send the request; False, sending nothing, if it is larger than a warm process reads."""
    umask = os.umask(0)
    os.umask(umask)
    streams = (sys.stdin, sys.stdout, sys.stderr)
    request = {
        "install": install(),
        "argv": [sys.argv[0], *argv],
        "cwd": os.getcwd(),
        "env": dict(env),
        "umask": umask,
        "stdio": [[s.encoding, s.errors] if s is not None else None for s in streams],
    }
    body = json.dumps(request).encode()
    if len(body) > MAX_REQUEST:
        return False
    data = LENGTH.pack(len(body)) + body
    sent = socket.send_fds(sock, [data], [0, 1, 2])
    if sent < len(data):
        sock.sendall(data[sent:])
    return True


def _outcome(replies: io.BufferedReader) -> int | None:
    """The command's exit code; None if the warm process refused it (run it here)."""
    first = _reply(replies)
    if "refused" in first:
        return None
    pid = first.get("pid")
    if not isinstance(pid, int):
        return _lost("before it started this command; run it again")

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    code = _reply(replies).get("exit")
    if not isinstance(code, int):
        return _lost("while it ran this command (a run it had started goes on; see `rlm runs`)")
    return code


def _lost(when: str) -> int:
    print(f"error: `rlm dev`'s warm process went away {when}", file=sys.stderr)
    return 1


def _reply(replies: io.BufferedReader) -> dict[str, object]:
    """The next reply; empty when the connection closed or carried something else."""
    try:
        line = replies.readline()
        value = json.loads(line) if line else {}
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
