"""One REPL session: drives a runtime over the control socket, enforces the per-cell timeout, and replaces
a runtime that timed out, ran out of memory or died, restoring the last snapshot into the new one.

The backends (Docker, process) only know how to launch and kill a runtime; everything else is here.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

import structlog

from .api import (
    Answer,
    CellResult,
    CellStatus,
    SandboxClosed,
    SandboxError,
    SandboxLimits,
    SubcallError,
    SubcallHandler,
    SubcallRequest,
)
from .runtime import wire

log = structlog.get_logger("sandbox")

ExitReason = Literal["oom", "crashed"]
_EXIT_WAIT_S = 5.0


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


def _gib(size: int) -> str:
    return f"{size / (1 << 30):.2g} GiB" if size >= 1 << 30 else f"{size / (1 << 20):.0f} MiB"


def _seconds(value: float) -> str:
    return f"{value:g} s"


class _ProtocolError(Exception):
    """The runtime sent something the protocol does not allow (a bug or a hostile cell)."""


class _Heartbeat:
    def __init__(self, callback: Callable[[], None] | None, every_s: float) -> None:
        if not every_s > 0:
            raise ValueError(f"heartbeat_every_s={every_s} must be > 0")
        self.callback = callback
        self.every_s = every_s if callback is not None else 3600.0

    def __call__(self) -> None:
        if self.callback is not None:
            self.callback()


class Session:
    """A sandbox session; see ``sandbox.open_session``."""

    def __init__(self, launcher: Launcher, limits: SandboxLimits) -> None:
        self._launcher = launcher
        self._limits = limits
        # Private to this host user: only the runtime, through its bind mount, reaches the socket.
        self._dir = Path(tempfile.mkdtemp(prefix="rlm-sandbox-"))
        os.chmod(self._dir, 0o700)
        self._starts = 0
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
            self._start()
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

    def _start(self) -> None:
        self._check_open()
        started = time.monotonic()
        self._starts += 1
        path = self._dir / f"ctl-{self._starts}.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(path))
            # The runtime runs as another (unprivileged) user; the 0700 directory keeps other host users out.
            os.chmod(path, 0o666)  # noqa: S103
            listener.listen(1)
            runtime = self._launcher.launch(path)
            with self._lifecycle:
                closed = self._closed
                if not closed:
                    self._runtime = runtime
            if closed:
                runtime.kill()
                raise SandboxClosed("the session was closed while its runtime was starting")
            self._conn = self._accept(listener, started + self._limits.start_timeout_s)
        finally:
            listener.close()
            path.unlink(missing_ok=True)
        init = {
            "op": "init",
            "output_chars": self._limits.output_chars,
            "max_message_bytes": self._limits.message_bytes,
            **self._launcher.init_message(),
        }
        try:
            reply, _ = self._request(init, b"", started + self._limits.start_timeout_s)
        except (wire.ChannelClosed, wire.ChannelTimeout, _ProtocolError) as exc:
            why = str(exc)
            if isinstance(exc, wire.ChannelClosed) and not self._closed:
                why = runtime.exit_reason(wait_s=_EXIT_WAIT_S)[1]
            raise SandboxError(
                f"the sandbox runtime failed while loading the context ({why}); a large context may need "
                "a larger SandboxLimits.memory_bytes or start_timeout_s"
            ) from None
        if reply.get("op") != "ready":
            raise SandboxError(f"the sandbox runtime refused to start: {reply.get('message', reply)}")
        self.context_info = dict(reply.get("context", {}))
        log.info(
            "sandbox.started",
            backend=self._launcher.backend,
            runtime=runtime.ident[:12],
            ms=round((time.monotonic() - started) * 1000, 1),
        )

    def _accept(self, listener: socket.socket, deadline: float) -> socket.socket:
        runtime = self._runtime
        if runtime is None:
            raise SandboxError("no runtime was launched")
        listener.settimeout(0.05)
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                if not runtime.alive():
                    _, why = runtime.exit_reason(wait_s=_EXIT_WAIT_S)
                    raise SandboxError(
                        f"the sandbox runtime exited before connecting ({why}); "
                        "check that the image is the one `python -m sandbox.imagebuild` prints"
                    ) from None
                if time.monotonic() > deadline:
                    raise SandboxError(
                        "the sandbox runtime did not connect within "
                        f"{_seconds(self._limits.start_timeout_s)}; "
                        "raise SandboxLimits.start_timeout_s on a slow machine"
                    ) from None
                continue
            conn.settimeout(None)
            return conn

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

    def _replace(self) -> dict[str, str]:
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
                shutil.rmtree(self._dir, ignore_errors=True)

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
    def _channel_broken(self) -> bool:
        """True when the runtime is gone; cheap enough for every cell (no engine round trip)."""
        if self._conn is None or self._runtime is None:
            return True
        # The runtime never speaks unasked between requests, so anything readable is EOF or garbage.
        readable, _, _ = select.select([self._conn], [], [], 0)
        return bool(readable)

    def _wait_readable(self, deadline: float, beat: _Heartbeat) -> None:
        """Wait for the runtime to speak, heartbeating in between; reading starts only once it does."""
        conn = self._conn
        if conn is None:
            raise wire.ChannelClosed("no runtime connected")
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise wire.ChannelTimeout("no answer from the runtime before the deadline")
            readable, _, _ = select.select([conn], [], [], min(deadline - now, beat.every_s))
            if readable:
                return
            beat()

    def _send(self, message: dict[str, Any], blob: bytes = b"") -> None:
        if self._conn is None:
            raise wire.ChannelClosed("no runtime connected")
        try:
            self.bytes_sent += wire.send(self._conn, message, blob)
        except OSError as exc:
            raise wire.ChannelClosed(f"sending to the runtime failed ({exc})") from None

    def _recv(self, deadline: float | None) -> tuple[dict[str, Any], bytes]:
        if self._conn is None:
            raise wire.ChannelClosed("no runtime connected")
        # A hostile cell can write frames itself; these caps bound what it can make the host allocate.
        try:
            message, blob, size = wire.recv(
                self._conn,
                deadline=deadline,
                max_json=self._limits.message_bytes + 4 * 3 * self._limits.output_chars,
                max_blob=self._limits.memory_bytes,
            )
        except (wire.FrameTooLarge, ValueError, UnicodeDecodeError) as exc:
            raise _ProtocolError(str(exc)) from exc
        self.bytes_received += size
        return message, blob

    def _request(self, message: dict[str, Any], blob: bytes, deadline: float) -> tuple[dict[str, Any], bytes]:
        self._send(message, blob)
        return self._recv(deadline)

    # ---- snapshots -------------------------------------------------------------------------------
    def restore(self, snapshot: bytes) -> None:
        """Replace the user variables (and the answer) with those of ``snapshot``."""
        self._check_open()
        if not isinstance(snapshot, bytes | bytearray) or not snapshot:
            raise ValueError("restore() needs the non-empty bytes of a CellResult.snapshot")
        if self._channel_broken():
            self._stop_runtime()
            self._start()
        self._restore(bytes(snapshot))

    def _restore(self, snapshot: bytes) -> dict[str, str]:
        deadline = time.monotonic() + self._limits.cell_timeout_s
        try:
            reply, _ = self._request({"op": "restore"}, snapshot, deadline)
        except (wire.ChannelClosed, wire.ChannelTimeout) as exc:
            self._stop_runtime()
            self._start()
            raise SandboxError(
                f"restoring the snapshot killed or stalled the sandbox ({exc}); the session now has an "
                "empty namespace"
            ) from None
        if reply.get("op") != "restored":
            raise SandboxError(f"the snapshot was not restored: {reply.get('message', reply)}")
        self._last_snapshot = snapshot
        return {str(k): str(v) for k, v in reply.get("variables", {}).items()}

    # ---- cells -----------------------------------------------------------------------------------
    def execute(
        self,
        code: str,
        on_subcall: SubcallHandler,
        *,
        wall_timeout_s: float | None = None,
        heartbeat: Callable[[], None] | None = None,
        heartbeat_every_s: float = 5.0,
    ) -> CellResult:
        """Run one cell.

        ``wall_timeout_s`` (if given) overrides ``SandboxLimits.cell_wall_timeout_s``. ``heartbeat`` is called
        on this thread every ``heartbeat_every_s`` while the cell computes (a Temporal activity heartbeats
        from it); if it raises, the cell is abandoned as if the handler had raised.
        """
        self._check_open()
        if not isinstance(code, str):
            raise TypeError(f"execute() takes the cell's code as str, got {type(code).__name__}")
        started = time.monotonic()
        notes: list[str] = []
        if self._channel_broken():
            gone = "was closed" if self._runtime is None else "had died"
            self._replace()
            notes.append(f"the sandbox {gone} between cells; a new one was started from the last snapshot")
        wall = wall_timeout_s if wall_timeout_s is not None else self._limits.cell_wall_timeout_s
        beat = _Heartbeat(heartbeat, heartbeat_every_s)
        try:
            return self._run_cell(code, on_subcall, started, notes, wall, beat)
        except BaseException as exc:
            if self._closed:
                raise SandboxClosed("the session was closed while the cell was running") from exc
            raise

    def _run_cell(
        self,
        code: str,
        on_subcall: SubcallHandler,
        started: float,
        notes: list[str],
        wall: float | None,
        beat: _Heartbeat,
    ) -> CellResult:
        wall_deadline = None if wall is None else started + wall
        compute_left = self._limits.cell_timeout_s
        try:
            self._send({"op": "exec", "code": code})
            while True:
                waiting_since = time.monotonic()
                deadline = waiting_since + compute_left
                if wall_deadline is not None:
                    deadline = min(deadline, wall_deadline)
                self._wait_readable(deadline, beat)
                message, blob = self._recv(deadline)
                compute_left -= time.monotonic() - waiting_since
                if message.get("op") == "subcall":
                    self._answer_subcall(message, on_subcall)
                    if wall_deadline is not None and time.monotonic() >= wall_deadline:
                        raise wire.ChannelTimeout("wall-clock cap reached while answering a sub-call")
                    continue
                if message.get("op") != "result":
                    raise wire.ChannelClosed(f"unexpected message {message.get('op')!r} from the runtime")
                return self._cell_result(message, blob, started, notes)
        except wire.ChannelTimeout:
            over_wall = wall_deadline is not None and time.monotonic() >= wall_deadline
            limit = f"its wall-clock cap of {_seconds(wall or 0)}" if over_wall else None
            return self._lost("timeout", started, notes, limit)
        except wire.ChannelClosed as exc:
            reason: ExitReason = "crashed"
            detail = str(exc)
            runtime = self._runtime
            if runtime is not None and not self._closed:
                # EOF means the runtime is dead or dying; give the engine a moment to record why.
                reason, detail = runtime.exit_reason(wait_s=_EXIT_WAIT_S)
            return self._lost(reason, started, notes, detail)
        except _ProtocolError as exc:
            return self._lost("crashed", started, notes, f"the runtime broke the protocol ({exc})")
        except BaseException:
            # The handler failed unexpectedly (or we were interrupted): the cell is abandoned half-way,
            # so the namespace goes back to before it, and the caller sees the exception.
            self._replace()
            raise

    def _answer_subcall(self, message: dict[str, Any], on_subcall: SubcallHandler) -> None:
        prompts = message.get("prompts")
        kind = message.get("kind")
        if (
            kind not in ("llm", "rlm")
            or not isinstance(prompts, list)
            or not all(isinstance(p, str) for p in prompts)
        ):
            raise _ProtocolError("malformed sub-call request")
        model = message.get("model")
        request = SubcallRequest(
            kind=kind,
            prompts=prompts,
            model=model if isinstance(model, str) else None,
            seq=message.get("seq", 0) if isinstance(message.get("seq"), int) else 0,
            batched=message.get("batched") is True,
        )
        try:
            answers = on_subcall(request)
        except SubcallError as exc:
            self._send({"op": "subcall_error", "reason": exc.reason})
            return
        if not isinstance(answers, list) or len(answers) != len(prompts):
            got = len(answers) if isinstance(answers, list) else type(answers).__name__
            reason = f"the host answered with {got} results for {len(prompts)} prompts"
            log.error("sandbox.subcall_bad_answer", seq=request.seq, reason=reason)
            self._send({"op": "subcall_error", "reason": reason})
            return
        self._send({"op": "subcall_result", "answers": [str(a) for a in answers]})

    def _lost(self, status: CellStatus, started: float, notes: list[str], detail: str | None) -> CellResult:
        if status == "timeout":
            what = f"cell timed out after {detail or _seconds(self._limits.cell_timeout_s)}"
        elif status == "oom":
            what = f"cell ran out of memory (limit {_gib(self._limits.memory_bytes)})"
        else:
            what = f"the sandbox died during the cell: {detail}"
        variables = self._replace()
        restored = (
            "state restored to before the cell" if self._last_snapshot else "state reset (no snapshot yet)"
        )
        notes.append(f"{what}; {restored}")
        log.warning("sandbox.cell_lost", status=status, detail=detail)
        return CellResult(
            status=status,
            stdout="",
            stderr="",
            stdout_cut=0,
            stderr_cut=0,
            traceback=None,
            answer=None,
            variables=variables,
            unpicklable=[],
            duration_s=time.monotonic() - started,
            subcalls=0,
            snapshot=self._last_snapshot,
            message="; ".join(notes),
        )

    def _cell_result(
        self, message: dict[str, Any], blob: bytes, started: float, notes: list[str]
    ) -> CellResult:
        answer = message.get("answer")
        unpicklable = [str(name) for name in message.get("unpicklable", [])]
        reasons = message.get("unpicklable_reasons", {})
        if unpicklable:
            notes.append(
                "not in the snapshot: "
                + "; ".join(f"{name} ({reasons.get(name, '?')})" for name in unpicklable)
            )
        self._last_snapshot = blob
        result = CellResult(
            status="ok" if message.get("status") == "ok" else "error",
            stdout=str(message.get("stdout", "")),
            stderr=str(message.get("stderr", "")),
            stdout_cut=int(message.get("stdout_cut", 0)),
            stderr_cut=int(message.get("stderr_cut", 0)),
            traceback=message.get("traceback"),
            answer=None if answer is None else Answer(str(answer["content"]), bool(answer["ready"])),
            variables={str(k): str(v) for k, v in message.get("variables", {}).items()},
            unpicklable=unpicklable,
            duration_s=time.monotonic() - started,
            subcalls=int(message.get("subcalls", 0)),
            snapshot=blob,
            message="; ".join(notes) or None,
        )
        log.info(
            "sandbox.cell_finished",
            status=result.status,
            ms=round(result.duration_s * 1000, 1),
            compute_ms=round(float(message.get("compute_s", 0.0)) * 1000, 1),
            subcalls=result.subcalls,
            snapshot_bytes=len(blob),
        )
        return result
