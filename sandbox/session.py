"""One REPL session: drives a runtime over the control socket, enforces the per-cell timeout, and replaces
a runtime that timed out, ran out of memory or died, restoring the last snapshot into the new one.

The backends (Docker, process) only know how to launch and kill a runtime; everything else is here
and, for one cell's messages, in ``cell.py``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import structlog

from . import channel, messages, streaming
from .api import (
    CellResult,
    SandboxClosed,
    SandboxError,
    SandboxLimits,
    SubcallAnswer,
    SubcallHandler,
    SubcallRefused,
    SubcallRequest,
)
from .cell import EXIT_WAIT_S, Cell, ExitReason, seconds
from .runtime import wire

log = structlog.get_logger("sandbox")


class Runtime(Protocol):
    """One launched runtime (a container or a process)."""

    ident: str

    def alive(self) -> bool: ...

    def exit_reason(self, wait_s: float) -> tuple[ExitReason, str]:
        """Why it stopped, waiting up to ``wait_s`` for it to stop: the reason and a short description."""
        ...

    def kill(self) -> None:
        """Stop and remove it; idempotent."""
        ...


class Launcher(Protocol):
    backend: str

    def launch(self, socket_path: Path) -> Runtime: ...

    def init_message(self) -> dict[str, Any]:
        """Backend-specific fields of the init message (where the context is, rlimits)."""
        ...

    def close(self) -> None:
        """Release what the launcher holds (e.g. the engine connection)."""
        ...


@dataclass
class Started:
    """A runtime launched and connected before any session wanted it (a pooled container): it waits for
    its init message, which carries no context path; the context follows as frames (``streaming``)."""

    runtime: Runtime
    conn: socket.socket


def accept(
    listener: socket.socket, runtime: Runtime, deadline: float, start_timeout_s: float
) -> socket.socket:
    """The runtime's connection to ``listener``; a runtime that exits or stays silent is an error."""
    listener.settimeout(0.05)
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if not runtime.alive():
                _, why = runtime.exit_reason(wait_s=EXIT_WAIT_S)
                raise SandboxError(
                    f"the sandbox runtime exited before connecting ({why}); "
                    "check that the image is the one `python -m sandbox.imagebuild` prints"
                ) from None
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"the sandbox runtime did not connect within {seconds(start_timeout_s)}; "
                    "raise SandboxLimits.start_timeout_s on a slow machine"
                ) from None
            continue
        conn.settimeout(None)
        return conn


class Session:
    """A sandbox session; see ``sandbox.open_session``. ``started`` is a runtime already running (from a
    pool) for the first start; it then gets ``context`` over the channel. Replacements are launched."""

    def __init__(
        self,
        launcher: Launcher,
        limits: SandboxLimits,
        *,
        started: Started | None = None,
        context: Path | None = None,
    ) -> None:
        self._launcher = launcher
        self._limits = limits
        self._started = started
        self._context = context
        self._runtime: Runtime | None = None
        self._conn: socket.socket | None = None
        self._last_snapshot: bytes | None = None
        self._closed = False
        # close() may run on another thread while this one starts a runtime: one of them removes it.
        self._lifecycle = threading.Lock()
        # A second close() returns once the first has removed the runtime.
        self._closing = threading.Lock()
        self.bytes_sent = 0
        self.bytes_received = 0
        self.context_info: dict[str, Any] = {}
        try:
            self._start_first()
        except BaseException:
            self.close()
            raise

    # ---- lifecycle -------------------------------------------------------------------------------
    @property
    def runtime_id(self) -> str:
        """The container id (docker) or pid (process) of the current runtime."""
        if self._runtime is None:
            raise SandboxClosed("the session is closed")
        return self._runtime.ident

    def _start_first(self) -> None:
        """The first start: on a pooled runtime if one was handed in, else (or if that one fails, say
        it died while idle) on a runtime launched for this session."""
        if self._started is not None:
            try:
                self._start()
                return
            except SandboxError as exc:
                if self._closed:
                    raise
                log.warning("sandbox.pooled_failed", error=str(exc)[:300])
                self._stop_runtime()
        self._start()

    def _start(self) -> None:
        self._check_open()
        started = time.monotonic()
        backend = self._launcher.init_message()
        stream: streaming.StreamedContext | None = None
        if self._started is not None:
            ready, self._started = self._started, None
            runtime = ready.runtime
            self._adopt(runtime)
            self._conn = ready.conn
            if self._context is not None:
                stream = streaming.plan(self._context)
                backend = {**backend, "context": None, "context_stream": stream.spec}
        else:
            runtime = self._launch(started)
        init = messages.Init(
            output_chars=self._limits.output_chars,
            max_message_bytes=self._limits.message_bytes,
            backend=backend,
        )
        try:
            self.send(init)
            if stream is not None and self._conn is not None:
                try:
                    self.bytes_sent += streaming.send(self._conn, stream)
                except OSError as exc:
                    raise wire.ChannelClosed(f"sending the context failed ({exc})") from None
            reply, _ = self.recv(started + self._limits.start_timeout_s)
        except (wire.ChannelClosed, wire.ChannelTimeout, messages.Malformed) as exc:
            why = str(exc)
            if isinstance(exc, wire.ChannelClosed) and not self._closed:
                why = runtime.exit_reason(wait_s=EXIT_WAIT_S)[1]
            raise SandboxError(
                f"the sandbox runtime failed while loading the context ({why}); a large context may need "
                "a larger SandboxLimits.memory_bytes or start_timeout_s"
            ) from None
        if not isinstance(reply, messages.Ready):
            refusal = reply.message if isinstance(reply, messages.Refused) else reply
            raise SandboxError(f"the sandbox runtime refused to start: {refusal}")
        self.context_info = reply.context
        log.info(
            "sandbox.started",
            backend=self._launcher.backend,
            runtime=runtime.ident[:12],
            ms=round((time.monotonic() - started) * 1000, 1),
        )

    def _adopt(self, runtime: Runtime) -> None:
        with self._lifecycle:
            closed = self._closed
            if not closed:
                self._runtime = runtime
        if closed:
            runtime.kill()
            raise SandboxClosed("the session was closed while its runtime was starting")

    def _launch(self, started: float) -> Runtime:
        with channel.control_socket() as (listener, path):
            runtime = self._launcher.launch(path)
            self._adopt(runtime)
            deadline = started + self._limits.start_timeout_s
            self._conn = accept(listener, runtime, deadline, self._limits.start_timeout_s)
        return runtime

    def _stop_runtime(self) -> None:
        # Swapped out first: close() may run on another thread while execute() is waiting.
        with self._lifecycle:
            conn, self._conn = self._conn, None
            runtime, self._runtime = self._runtime, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes a recv() blocked on another thread
            conn.close()
        if runtime is not None:
            runtime.kill()

    def replace(self) -> dict[str, str]:
        """Kill the runtime, start a new one and load the last snapshot; returns the restored variables."""
        self._stop_runtime()
        self._start()
        if self._last_snapshot is None:
            return {}
        return self._restore(self._last_snapshot)

    def close(self) -> None:
        """Remove the runtime; safe to call from another thread to abandon a running cell. Returns once
        the runtime is gone, whichever thread removes it."""
        with self._closing:
            with self._lifecycle:
                if self._closed:
                    return
                self._closed = True
            try:
                self._stop_runtime()
            finally:
                self._launcher.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxClosed("this sandbox session is closed; open a new one with open_session()")

    # ---- channel ---------------------------------------------------------------------------------
    def channel_broken(self) -> bool:
        """True when the runtime is gone; cheap enough for every cell (no engine round trip)."""
        if self._conn is None or self._runtime is None:
            return True
        # The runtime never speaks unasked between requests, so anything readable is EOF or garbage.
        return channel.readable(self._conn, 0)

    def send(self, message: messages.ToRuntime, blob: bytes = b"") -> None:
        if self._conn is None:
            raise wire.ChannelClosed("no runtime connected")
        try:
            self.bytes_sent += wire.send(self._conn, messages.encode(message), blob)
        except OSError as exc:
            raise wire.ChannelClosed(f"sending to the runtime failed ({exc})") from None

    def recv(self, deadline: float | None) -> tuple[messages.FromRuntime, bytes]:
        """The runtime's next message; a message the protocol does not allow raises ``messages.Malformed``."""
        conn = self._conn
        if conn is None:
            raise wire.ChannelClosed("no runtime connected")
        # A hostile cell can write frames itself; these caps bound what it can make the host allocate.
        try:
            message, blob, size = wire.recv(
                conn,
                deadline=deadline,
                max_json=self._limits.message_bytes + 4 * 3 * self._limits.output_chars,
                max_blob=self._limits.memory_bytes,
                wait=channel.waiter(conn, lambda: self._closed),
            )
            self.bytes_received += size
            return messages.decode(message), blob
        except (wire.FrameTooLarge, ValueError, UnicodeDecodeError) as exc:
            raise messages.Malformed(str(exc)) from exc

    def _request(
        self, message: messages.ToRuntime, blob: bytes, deadline: float
    ) -> tuple[messages.FromRuntime, bytes]:
        self.send(message, blob)
        return self.recv(deadline)

    # ---- snapshots -------------------------------------------------------------------------------
    def restore(self, snapshot: bytes) -> None:
        """Replace the user variables (and the answer) with those of ``snapshot``."""
        self._check_open()
        if not isinstance(snapshot, bytes | bytearray) or not snapshot:
            raise ValueError("restore() needs the non-empty bytes of a CellResult.snapshot")
        if self.channel_broken():
            self._stop_runtime()
            self._start()
        self._restore(bytes(snapshot))

    def _restore(self, snapshot: bytes) -> dict[str, str]:
        deadline = time.monotonic() + self._limits.cell_timeout_s
        try:
            reply, _ = self._request(messages.Restore(), snapshot, deadline)
        except (wire.ChannelClosed, wire.ChannelTimeout) as exc:
            self._stop_runtime()
            self._start()
            raise SandboxError(
                f"restoring the snapshot killed or stalled the sandbox ({exc}); the session now has an "
                "empty namespace"
            ) from None
        if not isinstance(reply, messages.Restored):
            why = reply.message if isinstance(reply, messages.Refused) else reply
            raise SandboxError(f"the snapshot was not restored: {why}")
        self._last_snapshot = snapshot
        return reply.variables

    # ---- cells -----------------------------------------------------------------------------------
    def execute(self, code: str, on_subcall: SubcallHandler) -> CellResult:
        """Run one cell, answering its sub-calls with ``on_subcall`` on this thread. A handler that raises
        anything but ``SubcallRefused`` abandons the cell: the namespace goes back to before it."""
        cell = self.begin_cell(code)
        step = cell.advance()
        while isinstance(step, SubcallRequest):
            try:
                reply: SubcallAnswer = on_subcall(step)
            except SubcallRefused as exc:
                reply = exc
            except BaseException as exc:
                if self._closed:
                    raise SandboxClosed("the session was closed while the cell was running") from exc
                cell.abandon()
                raise
            step = cell.advance(reply)
        return step

    def begin_cell(self, code: str) -> Cell:
        """A cell to drive step by step (``Cell.advance``); nothing runs until the first step."""
        self._check_open()
        if not isinstance(code, str):
            raise TypeError(f"execute() takes the cell's code as str, got {type(code).__name__}")
        return Cell(self, code)
