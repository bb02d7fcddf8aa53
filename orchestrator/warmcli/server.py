"""The server half of the warm CLI: the process `rlm dev` keeps with the client's modules loaded.

It imports what the short-lived commands import (Typer's app, the store and its models, Temporal's
client, structlog), then waits on its socket; each command handed to it (``client``) runs in a child
forked from it, so the child starts where a fresh ``rlm`` would be after half a second of imports.

Single-threaded on purpose: fork copies only the calling thread, so nothing here may start a thread, an
event loop, a Temporal client or a database connection. It checks its own thread count before it
serves, and every child makes its own connections. It stops when `rlm dev` closes its stdin (or dies):
the children still running get SIGTERM, which a command treats as an interrupt (a run goes on).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import structlog

from orchestrator.parent_death import ends_with_parent
from orchestrator.warmcli import DISABLE
from orchestrator.warmcli.client import address, peer_uid
from orchestrator.warmcli.request import Request, parsed, read_request, refusal, served_install

log = structlog.get_logger(__name__)

# What the handed commands import before their first statement; a module missed here is imported by
# the child, slower but the same.
PRELOAD = (
    "orchestrator.cli",
    "orchestrator.cli.quick_args",
    "orchestrator.logs",
    "orchestrator.settings",
    "orchestrator.targets",
    "orchestrator.connection",
    "orchestrator.store",
    "orchestrator.runs.start",
    "orchestrator.runs.inspect",
    "orchestrator.runs.progress",
    "orchestrator.runs.serving",
    "orchestrator.workflows.types",
    "temporalio.client",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql.psycopg",
    # Typer converts the arguments of every command but `rlm run` through Pydantic adapters.
    "typer._adapters",
    "zoneinfo",
)
LAUNCH = "import sys\nfrom orchestrator.warmcli.server import main\nsys.exit(main(sys.argv))"
STOP_GRACE_S = 3.0
REQUEST_TIMEOUT_S = 5.0


@dataclass
class Child:
    pid: int
    pidfd: int
    conn: socket.socket | None  # None once the client is gone
    command: str
    started: float


def preload() -> None:
    served_install()  # the source this process runs: a request from an install changed since goes elsewhere
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # another release of a library: the child imports what it needs
            log.warning("warmcli.preload_missing", module=name, error=str(exc))
    from sqlalchemy.orm import configure_mappers

    configure_mappers()  # else every child's first query does it


class Server:
    def __init__(self, listener: socket.socket, parent: int) -> None:
        self._listener = listener
        self._parent = parent  # the read end of `rlm dev`'s pipe: EOF means stop
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel = selectors.DefaultSelector()
        self._children: dict[int, Child] = {}
        self._stop_by: float | None = None
        # Every command is forked from this one process: looked up once, armed in each child.
        self._ends_with_me = ends_with_parent()

    def serve(self) -> None:
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno())
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: None)  # the wakeup fd carries it to the loop
        self._sel.register(self._listener, selectors.EVENT_READ, self._accept)
        self._sel.register(self._parent, selectors.EVENT_READ, self._parent_ready)
        self._sel.register(self._wake_r, selectors.EVENT_READ, self._woken)
        while self._stop_by is None or (self._children and time.monotonic() < self._stop_by):
            timeout = None if self._stop_by is None else max(0.0, self._stop_by - time.monotonic())
            for key, _ in self._sel.select(timeout):
                try:
                    key.data(key.fileobj)
                except Exception:
                    # One command's trouble must not take the others' exit codes with it.
                    log.exception("warmcli.error")
        for child in list(self._children.values()):
            _signal(child.pid, signal.SIGKILL)
            self._reap(child.pidfd)

    def _stop(self) -> None:
        if self._stop_by is not None:
            return
        self._stop_by = time.monotonic() + STOP_GRACE_S
        self._sel.unregister(self._listener)
        self._listener.close()
        self._sel.unregister(self._parent)
        for child in self._children.values():
            _signal(child.pid, signal.SIGTERM)
        log.info("warmcli.stopping", running=len(self._children))

    def _parent_ready(self, _fd: Any) -> None:
        if not os.read(self._parent, 4096):
            self._stop()

    def _woken(self, _sock: Any) -> None:
        with contextlib.suppress(BlockingIOError):
            if self._wake_r.recv(64):
                self._stop()

    def _accept(self, _sock: Any) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        fds: list[int] = []
        try:
            # Before reading anything: another user must not even hold this loop for its timeout.
            if peer_uid(conn) != os.getuid():
                _refuse(conn, "another user")
                return
            conn.settimeout(REQUEST_TIMEOUT_S)
            raw, fds = read_request(conn)
            refused = refusal(raw, fds)
            if refused:
                _refuse(conn, refused)
                return
            request = parsed(raw)
            pid = os.fork()
            if pid == 0:
                self._become(conn, request, fds)
        except (OSError, ValueError) as exc:
            log.warning("warmcli.bad_request", error=str(exc))
            conn.close()
            return
        finally:
            for fd in fds:
                os.close(fd)
        command = request.argv[1] if len(request.argv) > 1 else ""
        pidfd = os.pidfd_open(pid)
        self._children[pidfd] = Child(pid, pidfd, conn, command, time.monotonic())
        self._sel.register(pidfd, selectors.EVENT_READ, self._reap)
        log.info("warmcli.started", pid=pid, command=command)
        try:
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        except OSError:
            self._client_gone(self._children[pidfd])
            return
        self._sel.register(conn, selectors.EVENT_READ, self._client_ready)

    def _client_ready(self, conn: Any) -> None:
        child = next((c for c in self._children.values() if c.conn is conn), None)
        if child is None:
            return  # its command ended in this same round
        try:
            gone = not conn.recv(4096)
        except OSError:
            gone = True
        if gone:
            self._sel.unregister(conn)
            self._client_gone(child)

    def _client_gone(self, child: Child) -> None:
        if child.conn is not None:
            child.conn.close()
            child.conn = None
        _signal(child.pid, signal.SIGTERM)  # as if the client had got it: a run goes on

    def _reap(self, pidfd: Any) -> None:
        child = self._children.pop(pidfd)
        _, status = os.waitpid(child.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(pidfd)
        os.close(pidfd)
        # Logged before the client hears: whoever reads the log once its command returned finds it.
        ms = round(1000 * (time.monotonic() - child.started), 1)
        log.info("warmcli.finished", pid=child.pid, command=child.command, exit=code, ms=ms)
        if child.conn is not None:
            with contextlib.suppress(OSError):
                child.conn.sendall(json.dumps({"exit": code}).encode() + b"\n")
            self._sel.unregister(child.conn)
            child.conn.close()

    def _become(self, conn: socket.socket, request: Request, fds: list[int]) -> NoReturn:
        """In the child: drop the server's sockets, take the client's stdio, environment and place,
        and run the command as ``rlm`` would."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            # A command must not outlive the process its client waits on (the client has already
            # reported it lost).
            self._ends_with_me()
            self._sel.close()
            for sock in (self._listener, self._wake_r, self._wake_w, conn):
                sock.close()
            for child in self._children.values():
                os.close(child.pidfd)
                if child.conn is not None:
                    child.conn.close()
            os.close(self._parent)
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            fds.clear()
            os.chdir(request.cwd)
            os.umask(request.umask)
            os.environ.clear()
            os.environ.update(request.env)
            sys.argv = request.argv
            _stdio(request.stdio)
            code = run_cli()
        except BaseException:
            with contextlib.suppress(BaseException):
                traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(BaseException):
                    stream.flush()
            os._exit(code)


def _refuse(conn: socket.socket, reason: str) -> None:
    log.warning("warmcli.refused", reason=reason)
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps({"refused": reason}).encode() + b"\n")
    conn.close()


def _stdio(specs: Sequence[tuple[str, str] | None]) -> None:
    """Text streams over fds 0-2 as the interpreter makes them: the client's encodings and error
    handlers; stdout line-buffered on a terminal, stderr always."""
    streams = []
    for fd, spec in enumerate(specs):
        writing = fd > 0
        raw = io.FileIO(fd, "wb" if writing else "rb", closefd=False)
        buffer = io.BufferedWriter(raw) if writing else io.BufferedReader(raw)
        encoding, errors = spec if spec is not None else ("utf-8", "strict")
        line_buffering = writing and (fd == 2 or raw.isatty())
        streams.append(
            io.TextIOWrapper(
                buffer, encoding=encoding, errors=errors, newline="\n", line_buffering=line_buffering
            )
        )
    sys.stdin, sys.stdout, sys.stderr = streams


def run_cli() -> int:
    """``rlm``'s own entry past the hand-off (so it never hands off again): its exit code."""
    from orchestrator.cli import main

    try:
        main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    return 0


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


@contextlib.contextmanager
def warm_cli(data_dir: Path) -> Iterator[Callable[[], None]]:
    """`rlm dev`'s warm CLI for ``data_dir`` while the block runs (none with ``RLM_WARM_CLI=0``).

    The block gets ``stop``: it stops the warm process's commands now (SIGTERM) without waiting. `rlm
    dev` calls it as soon as it is told to stop, before its worker stops: a command starting meanwhile
    would otherwise find no live worker and start one of its own inside the stopping `rlm dev`."""
    if os.environ.get(DISABLE) == "0" or sys.platform != "linux":  # abstract sockets, pidfds, prctl
        yield lambda: None
        return
    proc = subprocess.Popen(
        # Not ``-m``: Click names the program after ``__main__``'s package, and a command forked from
        # here must say ``rlm`` as the console script does. ``-P``: no working directory on sys.path,
        # so this process imports what a console script does.
        [sys.executable, "-P", "-c", LAUNCH, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C at `rlm dev`'s terminal reaches `rlm dev`, which stops it
    )

    def stop() -> None:
        if proc.stdin is not None:
            proc.stdin.close()  # EOF: the warm process stops (closing twice does nothing)

    try:
        yield stop
    finally:
        stop()
        try:
            proc.wait(timeout=STOP_GRACE_S + 2.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: Sequence[str]) -> int:
    from orchestrator.logs import configure_logging

    configure_logging("info")
    started = time.monotonic()
    preload()
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        log.error("warmcli.not_single_threaded", threads=threads)
        return 1
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(address(argv[1], os.getuid()))
    except OSError as exc:
        log.warning("warmcli.unavailable", error=str(exc))
        return 1
    listener.listen(64)
    log.info("warmcli.serving", data_dir=argv[1], preload_ms=round(1000 * (time.monotonic() - started)))
    Server(listener, sys.stdin.fileno()).serve()
    return 0
