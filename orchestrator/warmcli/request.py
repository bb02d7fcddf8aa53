"""A request of the warm CLI's client, as the warm process reads and checks it."""

from __future__ import annotations

import functools
import json
import os
import socket
from dataclasses import dataclass
from typing import Any

from orchestrator.warmcli.client import LENGTH, MAX_REQUEST, install


@dataclass
class Request:
    argv: list[str]
    cwd: str
    env: dict[str, str]
    umask: int
    stdio: list[tuple[str, str] | None]


def read_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The request and the descriptors that came with it (the caller closes them)."""
    data, fds, _, _ = socket.recv_fds(conn, 65536, 3)
    try:
        return _request_body(conn, data), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _request_body(conn: socket.socket, data: bytes) -> dict[str, Any]:
    while len(data) < LENGTH.size:
        more = conn.recv(65536)
        if not more:
            raise ValueError("the client closed the connection mid-request")
        data += more
    (size,) = LENGTH.unpack_from(data)
    if size > MAX_REQUEST:
        raise ValueError(f"a request of {size} bytes (at most {MAX_REQUEST})")
    data = data[LENGTH.size :]
    while len(data) < size:
        more = conn.recv(size - len(data))
        if not more:
            raise ValueError("the client closed the connection mid-request")
        data += more
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError("a request that is not a JSON object")
    return value


@functools.cache
def served_install() -> str:
    """The install this process imported its code from: taken once, when it starts (``preload``)."""
    return install()


def refusal(request: dict[str, Any], fds: list[int]) -> str | None:
    """Why this request must run in the client's own process, if it must."""
    if request.get("install") != served_install():
        return "another interpreter or install of durable-rlm"
    if len(fds) != 3:
        return "no stdin, stdout and stderr"
    return None


def parsed(raw: dict[str, Any]) -> Request:
    argv, cwd, env, umask, stdio = (raw.get(k) for k in ("argv", "cwd", "env", "umask", "stdio"))
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise ValueError("argv must be a list of strings")
    if not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        raise ValueError("env must map strings to strings")
    if not (isinstance(cwd, str) and isinstance(umask, int) and isinstance(stdio, list) and len(stdio) == 3):
        raise ValueError("cwd, umask and stdio are missing or malformed")
    streams: list[tuple[str, str] | None] = []
    for spec in stdio:
        ok = isinstance(spec, list) and len(spec) == 2 and all(isinstance(s, str) for s in spec)
        streams.append((spec[0], spec[1]) if ok else None)
    return Request(argv, cwd, env, umask, streams)
