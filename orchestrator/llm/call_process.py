"""The model-call process: a worker's litellm calls made in a child process of its own.

A worker runs workflow activations, activities, store transactions and model calls in one interpreter,
and in a wide fan-out that interpreter is the bottleneck: litellm's work per call (building the
request, parsing the response, its logging and cost objects) is about a third of it. Handed to a child,
that work runs on another core, and the worker keeps only the hand-over (docs/operations.md, "The
model-call process").

What stays in the worker: the budget, the per-model gate, the abort watch, retries (Temporal's) and
every store write. The child only runs ``complete()``: one request in, its ``CompletionResult`` or
``ModelCallError`` out. Frames on the child's stdin and stdout are a 4-byte big-endian length and a
pickle (the two processes are one install): ``(CALL, id, request, log context)`` and ``(CANCEL, id)``
in, ``(DONE, id, result)`` and ``(FAILED, id, error)`` out.

A call cancelled in the worker (an abort, a deadline, a cancelled activity) is cancelled in the child.
A child that dies fails its calls in flight with a retryable ``ModelCallError`` (kind ``process``), so
Temporal retries them, and the next call starts a new child. The child ends when its stdin closes:
when the worker closes it, or when the worker dies, ``kill -9`` included.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import pickle
import struct
import sys
from typing import Any

import structlog

from orchestrator.llm.complete import CompletionRequest, CompletionResult, ModelCallError

log = structlog.get_logger(__name__)

FRAME = struct.Struct(">I")
CALL, CANCEL, DONE, FAILED = "call", "cancel", "done", "failed"
CHILD_MODULE = "orchestrator.llm.call_process_main"
# How long close() waits for the child to leave after its stdin closes, before it kills it.
CLOSE_WAIT_S = 2.0


def frame(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    """The next message, or None at the end of the stream."""
    try:
        (size,) = FRAME.unpack(await reader.readexactly(FRAME.size))
        message = pickle.loads(await reader.readexactly(size))  # noqa: S301  # our own child's frames
    except asyncio.IncompleteReadError:
        return None
    if not isinstance(message, tuple):
        raise TypeError(f"a model-call frame that is not a tuple: {type(message).__name__}")
    return message


class _Child:
    """One child process and the calls it has in flight."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pending: dict[int, tuple[asyncio.Future[CompletionResult], str]] = {}  # id: (its end, model)
        self.reader = asyncio.create_task(self._read(), name="model-calls-reader")

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None and not self.reader.done()

    def send(self, message: tuple[Any, ...]) -> None:
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing():
            raise BrokenPipeError("the model-call process's stdin is closed")
        stdin.write(frame(message))

    async def _read(self) -> None:
        stdout = self.proc.stdout
        if stdout is None:
            raise RuntimeError("the model-call process was started without a stdout pipe")
        why = "its output ended"
        try:
            while (message := await read_frame(stdout)) is not None:
                kind, call_id, value = message
                future, _ = self.pending.pop(call_id, (None, ""))
                if future is None or future.done():
                    continue  # cancelled here meanwhile
                if kind == DONE:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        except Exception as exc:  # a frame that does not decode: nothing after it can be trusted
            why = f"its output could not be read ({type(exc).__name__}: {exc})"
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        code = await self.proc.wait()
        self._fail_all(f"the model-call process exited (code {code}; {why})")

    def _fail_all(self, why: str) -> None:
        if self.pending:
            log.warning("model_calls.process_lost", in_flight=len(self.pending), pid=self.proc.pid, why=why)
        for future, model in self.pending.values():
            if not future.done():
                future.set_exception(ModelCallError(kind="process", retryable=True, message=why, model=model))
        self.pending.clear()


class ModelCallProcess:
    """``complete()`` in a child process: the same result, the same errors, the same cancellation."""

    def __init__(self) -> None:
        self._child: _Child | None = None
        self._starting = asyncio.Lock()
        self._ids = itertools.count(1)
        self._closed = False

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.proc.pid if child is not None and child.alive else None

    async def start(self) -> None:
        """Start the child now (it imports litellm, a few seconds of CPU) rather than at the first call."""
        await self._running()

    async def complete(self, req: CompletionRequest) -> CompletionResult:
        child = await self._running()
        call_id = next(self._ids)
        future: asyncio.Future[CompletionResult] = asyncio.get_running_loop().create_future()
        child.pending[call_id] = (future, req.model)
        try:
            child.send((CALL, call_id, req, structlog.contextvars.get_contextvars()))
            return await future
        except BrokenPipeError as exc:
            why = f"the model-call process is gone: {exc}"
            raise ModelCallError(kind="process", retryable=True, message=why, model=req.model) from exc
        except asyncio.CancelledError:
            if child.pending.pop(call_id, None) is not None and child.alive:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    child.send((CANCEL, call_id))
            raise

    async def close(self) -> None:
        """Stop the child: it cancels what it still has in flight and leaves; killed if it does not."""
        self._closed = True
        child, self._child = self._child, None
        if child is None:
            return
        stdin = child.proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        try:
            await asyncio.wait_for(asyncio.shield(child.proc.wait()), CLOSE_WAIT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()
            await child.proc.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await child.reader
        log.info("model_calls.process_stopped", pid=child.proc.pid, code=child.proc.returncode)

    async def _running(self) -> _Child:
        async with self._starting:
            if self._closed:
                raise RuntimeError("the model-call process was closed")
            if self._child is None or not self._child.alive:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    CHILD_MODULE,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
                self._child = _Child(proc)
                log.info("model_calls.process_started", pid=proc.pid)
            return self._child
