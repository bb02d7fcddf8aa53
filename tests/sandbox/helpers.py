from __future__ import annotations

from collections.abc import Callable

from sandbox import Session, SubcallRequest

OpenSession = Callable[..., Session]


def no_subcalls(request: SubcallRequest) -> list[str]:
    raise AssertionError(f"unexpected sub-call {request}")
