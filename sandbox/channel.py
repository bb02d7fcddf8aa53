"""Waiting on the host's end of the control channel, in a way that the session's ``close()`` on another
thread always ends within ``CLOSED_CHECK_S``."""

from __future__ import annotations

import math
import select
import socket
import time
from collections.abc import Callable

from .runtime import wire
from .runtime.wire import Wait

# close() shuts the socket down, which wakes a read blocked on it at once. A wait also looks at the
# session this often, so that a wake-up that never comes costs this much, not the cell's whole timeout
# (seen once: a cell closed from another thread kept its thread until the cell's 60 s timeout).
CLOSED_CHECK_S = 0.25


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
