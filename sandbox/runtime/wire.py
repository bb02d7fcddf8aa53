"""Framing of the control channel between host and runtime (a connected unix socket).

A frame is an 8-byte header (JSON length, blob length; big-endian u32), a UTF-8 JSON object and an optional
binary blob. Blobs carry snapshots as raw bytes, so a 10 MB snapshot costs 10 MB on the wire, read into one
preallocated buffer: transfer is linear in its size.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, BinaryIO

HEADER = struct.Struct(">II")
# The largest part either side accepts; a peer announcing more is broken or hostile.
MAX_PART = (1 << 32) - 1

Message = dict[str, Any]
# Called with the deadline before each read; it returns once the socket is readable or the deadline
# passed, and raises ChannelClosed to give up (the host's session uses it to notice its own close()).
Wait = Callable[[float | None], None]


class ChannelClosed(EOFError):
    """The peer closed the channel (or died) before a whole frame arrived."""


class ChannelTimeout(TimeoutError):
    """No whole frame arrived before the deadline."""


class FrameTooLarge(ValueError):
    """The peer announced a frame part larger than the receiver accepts."""

    def __init__(self, part: str, size: int, limit: int) -> None:
        super().__init__(f"peer announced a {part} of {size} bytes; the limit is {limit}")
        self.part = part
        self.size = size
        self.limit = limit


def send(sock: socket.socket, message: Message, blob: bytes = b"") -> int:
    """Send one frame; returns the number of bytes written."""
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    sock.sendall(HEADER.pack(len(body), len(blob)) + body)
    if blob:
        sock.sendall(blob)
    return HEADER.size + len(body) + len(blob)


def _recv_exact(sock: socket.socket, size: int, deadline: float | None, wait: Wait | None) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        if wait is not None:
            wait(deadline)
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChannelTimeout(f"frame incomplete at the deadline ({received}/{size} bytes)")
            sock.settimeout(remaining)
        try:
            count = sock.recv_into(view[received:])
        except TimeoutError:
            raise ChannelTimeout(f"frame incomplete at the deadline ({received}/{size} bytes)") from None
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise ChannelClosed(f"channel reset by peer ({exc})") from None
        if count == 0:
            raise ChannelClosed(f"channel closed by peer ({received}/{size} bytes of a frame received)")
        received += count
    return buffer


def send_file(sock: socket.socket, message: Message, file: BinaryIO, size: int) -> int:
    """Send one frame whose blob is the first ``size`` bytes of ``file``, copied by the kernel
    (``sendfile``): the sender never holds the blob in memory."""
    if size > MAX_PART:
        raise FrameTooLarge("blob", size, MAX_PART)
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    sock.sendall(HEADER.pack(len(body), size) + body)
    if size:
        sent = sock.sendfile(file, 0, size)
        if sent != size:
            raise ChannelClosed(f"the file shrank while it was sent ({sent}/{size} bytes)")
    return HEADER.size + len(body) + size


def recv_frame(
    sock: socket.socket,
    *,
    deadline: float | None = None,
    max_json: int = MAX_PART,
    max_blob: int = MAX_PART,
    wait: Wait | None = None,
) -> tuple[Message, bytearray, int]:
    """Like ``recv``, but the blob is the buffer it was received into (no copy)."""
    json_size, blob_size = HEADER.unpack(_recv_exact(sock, HEADER.size, deadline, wait))
    if json_size > max_json:
        raise FrameTooLarge("message", json_size, max_json)
    if blob_size > max_blob:
        raise FrameTooLarge("blob", blob_size, max_blob)
    message = json.loads(_recv_exact(sock, json_size, deadline, wait).decode("utf-8"))
    if not isinstance(message, dict):
        raise ValueError(f"frame carries a JSON {type(message).__name__}, expected an object")
    blob = _recv_exact(sock, blob_size, deadline, wait) if blob_size else bytearray()
    if deadline is not None:
        sock.settimeout(None)
    return message, blob, HEADER.size + json_size + blob_size


def recv(
    sock: socket.socket,
    *,
    deadline: float | None = None,
    max_json: int = MAX_PART,
    max_blob: int = MAX_PART,
    wait: Wait | None = None,
) -> tuple[Message, bytes, int]:
    """Receive one frame: (message, blob, bytes read); ``deadline`` is a ``time.monotonic()`` instant."""
    message, blob, size = recv_frame(sock, deadline=deadline, max_json=max_json, max_blob=max_blob, wait=wait)
    return message, bytes(blob) if blob else b"", size
