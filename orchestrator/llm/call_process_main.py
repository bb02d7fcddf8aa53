"""The child half of the model-call process (``call_process``), run as ``python -m`` this module.

Reads calls from stdin, runs each as its own task through ``complete()``, writes each outcome back on
the protocol's stream, and leaves when stdin ends. Its stdout is moved to stderr first, so that what a
library prints never lands between two frames; its logs go to stderr like the worker's, each call's
with the log context the worker had bound for it (run, node, activity).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import sys
import threading
import time
from typing import Any

import structlog

from orchestrator.logs import configure_logging

log = structlog.get_logger(__name__)
# The OpenAI client's first-request imports take about 0.4 s: a child asked to leave during them waits.
PREIMPORT_WAIT_S = 10.0
# What the OpenAI client (litellm's, for OpenAI and every OpenAI-compatible provider) imports on its
# first request, imported at the child's start instead.
PREIMPORTED = "openai.resources"


def main() -> None:
    protocol_out = os.dup(1)
    os.dup2(2, 1)
    # Ctrl-C, and a service manager's SIGTERM, reach the whole process group: the worker stops first
    # and then closes our stdin, so the calls in flight while it winds down still get their answers.
    # A worker that dies closes it too.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging("info")
    preimport = threading.Thread(target=_preimport, name="rlm-preimport", daemon=True)
    code = 0
    try:
        asyncio.run(_serve(protocol_out, preimport))
    except Exception:
        log.exception("model_calls.process_failed")
        code = 1
    # Leave without the interpreter's finalization: litellm's HTTP handlers import modules from their
    # __del__, which hangs for good if the import lock is held by a thread that finalization froze.
    preimport.join(PREIMPORT_WAIT_S)
    sys.stderr.flush()
    os._exit(code)


async def _serve(protocol_out: int, preimport: threading.Thread) -> None:
    from orchestrator.llm.call_process import CALL, CANCEL, DONE, FAILED, frame, read_frame
    from orchestrator.llm.complete import ModelCallError, complete

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", 0))
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(protocol_out, "wb", 0))
    calls: dict[int, asyncio.Task[None]] = {}

    async def run(call_id: int, request: Any, context: dict[str, Any]) -> None:
        structlog.contextvars.bind_contextvars(**context)
        try:
            outcome: tuple[Any, ...] = (DONE, call_id, await complete(request))
        except asyncio.CancelledError:
            log.info("model_calls.cancelled", call_id=call_id, model=request.model)
            raise
        except ModelCallError as exc:
            outcome = (FAILED, call_id, exc)
        except Exception as exc:  # complete() maps every failure of the call; this is a bug: say which
            log.exception("model_calls.unexpected_error", call_id=call_id)
            outcome = (FAILED, call_id, RuntimeError(f"{type(exc).__name__}: {exc}"))
        finally:
            calls.pop(call_id, None)
        if not transport.is_closing():
            transport.write(frame(outcome))

    # The OpenAI client imports its resource modules at its first request (0.4 s): not in a first call.
    preimport.start()
    log.debug("model_calls.serving", pid=os.getpid())
    while (message := await read_frame(reader)) is not None:
        if message[0] == CALL:
            _, call_id, request, context = message
            calls[call_id] = asyncio.create_task(run(call_id, request, context))
        elif message[0] == CANCEL and (task := calls.pop(message[1], None)) is not None:
            task.cancel()
    # The worker closed our stdin, or is gone: what is still in flight has no one to answer.
    for task in list(calls.values()):
        task.cancel()
    await asyncio.gather(*calls.values(), return_exceptions=True)
    transport.close()


def _preimport() -> None:
    started = time.monotonic()
    # An optional client this installation lacks: its first call says so.
    with contextlib.suppress(ImportError):
        importlib.import_module(PREIMPORTED)
    log.info("model_calls.preimported", modules=[PREIMPORTED], ms=round((time.monotonic() - started) * 1000))


if __name__ == "__main__":
    main()
