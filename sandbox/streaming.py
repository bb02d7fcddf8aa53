"""A context sent over the control channel to a runtime that was started before its node was known.

A pooled container cannot get a bind mount after it started, and a directory shared between runs is
exactly what the sandbox must not have; so its context travels as frames right after the init message:
one frame per file, each file's bytes copied by the kernel from the page cache into the socket
(``sendfile``), received in the runtime into one preallocated buffer and decoded there into the value
(``runtime/context.decode_streamed``), which is then the only copy left. The files are the ones the
runtime would read from the mount, in the same order, so ``context`` is the same value either way.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .runtime import wire
from .runtime.context import directory_files


@dataclass(frozen=True)
class StreamedContext:
    """What the init message announces (``spec``) and the files whose bytes follow it, in order."""

    spec: dict[str, Any]
    files: list[Path]


def plan(context_path: Path) -> StreamedContext:
    """The files of ``context_path`` as the runtime would load them from its mount: a file alone, or a
    directory's files (``runtime.context.directory_files``), which the runtime decodes in that order."""
    if not context_path.is_dir():
        return StreamedContext({"kind": "file", "name": context_path.name, "parts": 1}, [context_path])
    kept = directory_files(context_path)
    return StreamedContext({"kind": "dir", "parts": len(kept)}, kept)


def send(conn: socket.socket, context: StreamedContext) -> int:
    """Send the files as ``context_part`` frames; returns the bytes written."""
    sent = 0
    for path in context.files:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            sent += wire.send_file(conn, {"op": "context_part"}, handle, size)
    return sent
