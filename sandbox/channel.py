"""The host's end of the control channel: the socket a runtime connects to, and waits on the connection
that the session's ``close()`` on another thread always ends within ``CLOSED_CHECK_S``."""

from __future__ import annotations

import contextlib
import math
import os
import select
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from . import hostdirs
from .api import SandboxError
from .runtime import wire
from .runtime.wire import Wait

# close() shuts the socket down, which wakes a read blocked on it at once. A wait also looks at the
# session this often, so that a wake-up that never comes costs this much, not the cell's whole timeout
# (seen once: a cell closed from another thread kept its thread until the cell's 60 s timeout).
CLOSED_CHECK_S = 0.25
# sun_path holds 108 bytes, the last a terminating zero.
SOCKET_PATH_BYTES = 107


@contextlib.contextmanager
def control_socket() -> Iterator[tuple[socket.socket, Path]]:
    """A listening unix socket for one runtime to connect to, in a directory of its own that goes with
    it: once the runtime is connected nothing of the session is left on the host's disk. A process
    killed while a runtime connects leaves the directory to the next host (``hostdirs``)."""
    # Private to this host user (``mkdtemp`` makes it 0700); the runtime runs as another (unprivileged)
    # user and reaches the socket through its bind mount only.
    directory = hostdirs.make(hostdirs.CONTROL)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        path = directory / "ctl.sock"
        if len(os.fsencode(path)) > SOCKET_PATH_BYTES:
            raise SandboxError(
                f"the control socket's path {path} is longer than the {SOCKET_PATH_BYTES} bytes a unix "
                "socket address holds; set TMPDIR to a shorter directory"
            )
        listener.bind(str(path))
        os.chmod(path, 0o666)  # noqa: S103
        listener.listen(1)
        yield listener, path
    finally:
        listener.close()
        shutil.rmtree(directory, ignore_errors=True)


def readable(conn: socket.socket, timeout_s: float) -> bool:
    """Whether ``conn`` has something to read (data, EOF or an error) within ``timeout_s``. ``poll``,
    not ``select``: a busy worker's descriptor numbers can pass select's limit of 1024."""
    poller = select.poll()
    poller.register(conn, select.POLLIN)
    return bool(poller.poll(math.ceil(max(0.0, timeout_s) * 1000)))


def waiter(conn: socket.socket, closed: Callable[[], bool]) -> Wait:
    """A ``wire`` wait for ``conn`` that raises ``ChannelClosed`` once ``closed()`` is true."""

    def wait(deadline: float | None) -> None:
        while True:
            if closed():
                raise wire.ChannelClosed("the session was closed")
            slice_s = CLOSED_CHECK_S if deadline is None else min(CLOSED_CHECK_S, deadline - time.monotonic())
            if slice_s <= 0:
                return  # the read that follows raises the timeout
            try:
                ready = readable(conn, slice_s)
            except (OSError, ValueError):  # closed under this thread: no descriptor left to poll
                raise wire.ChannelClosed("the session was closed") from None
            if ready:
                return

    return wait
