"""The control messages between the host's session and the runtime, as typed records on the host side.

``sandbox/runtime`` runs inside the container with nothing but the standard library, so it keeps plain
dicts; this module is the one place where the host turns its records into those dicts (``encode``)
and the runtime's dicts into records (``decode``). A message of the wrong shape is ``Malformed``: the
runtime is broken or a hostile cell wrote to the channel itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .api import Answer, CellStatus, SubcallKind, SubcallRequest


class Malformed(ValueError):
    """A message the protocol does not allow."""


# ---- host -> runtime ---------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Init:
    output_chars: int
    max_message_bytes: int
    # The backend's own fields: where the context is, rlimits, whether to exit with the parent.
    backend: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Exec:
    code: str


@dataclass(frozen=True, kw_only=True)
class Restore:
    """Load the snapshot that travels as the frame's blob."""


@dataclass(frozen=True, kw_only=True)
class SubcallAnswers:
    answers: list[str]


@dataclass(frozen=True, kw_only=True)
class SubcallRefused:
    reason: str


ToRuntime = Init | Exec | Restore | SubcallAnswers | SubcallRefused


def encode(message: ToRuntime) -> dict[str, Any]:
    match message:
        case Init():
            return {
                "op": "init",
                "output_chars": message.output_chars,
                "max_message_bytes": message.max_message_bytes,
                **message.backend,
            }
        case Exec():
            return {"op": "exec", "code": message.code}
        case Restore():
            return {"op": "restore"}
        case SubcallAnswers():
            return {"op": "subcall_result", "answers": message.answers}
        case SubcallRefused():
            return {"op": "subcall_error", "reason": message.reason}


# ---- runtime -> host ---------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Ready:
    context: dict[str, Any]  # the context's type and sizes


@dataclass(frozen=True, kw_only=True)
class Refused:
    """The runtime could not do what was asked (init failed, a snapshot would not load)."""

    message: str


@dataclass(frozen=True, kw_only=True)
class Restored:
    variables: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class Result:
    ok: bool
    stdout: str
    stderr: str
    stdout_cut: int
    stderr_cut: int
    traceback: str | None
    answer: Answer | None
    variables: dict[str, str]
    unpicklable: list[str]
    unpicklable_reasons: dict[str, str]
    subcalls: int
    compute_s: float


FromRuntime = Ready | Refused | Restored | Result | SubcallRequest


def decode(message: dict[str, Any]) -> FromRuntime:
    op = message.get("op")
    try:
        if op == "subcall":
            return _subcall(message)
        if op == "result":
            return _result(message)
        if op == "ready":
            return Ready(context=dict(message.get("context") or {}))
        if op == "restored":
            return Restored(variables=_names(message.get("variables")))
        if op == "error":
            return Refused(message=str(message.get("message", "no reason given")))
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise Malformed(f"malformed {op!r} message ({exc})") from None
    raise Malformed(f"unexpected message {op!r} from the runtime")


def _subcall(message: dict[str, Any]) -> SubcallRequest:
    kind = message.get("kind")
    prompts = message.get("prompts")
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise ValueError("a sub-call's prompts must be a list of strings")
    if kind not in list(SubcallKind):
        raise ValueError(f"a sub-call's kind must be one of {', '.join(SubcallKind)}")
    model = message.get("model")
    seq = message.get("seq")
    return SubcallRequest(
        kind=SubcallKind(kind),
        prompts=prompts,
        model=model if isinstance(model, str) else None,
        seq=seq if isinstance(seq, int) else 0,
        batched=message.get("batched") is True,
    )


def _result(message: dict[str, Any]) -> Result:
    answer = message.get("answer")
    traceback = message.get("traceback")
    reasons = message.get("unpicklable_reasons") or {}
    return Result(
        ok=message.get("status") == CellStatus.OK,  # the runtime spells it; it imports nothing of ours
        stdout=str(message.get("stdout", "")),
        stderr=str(message.get("stderr", "")),
        stdout_cut=int(message.get("stdout_cut", 0)),
        stderr_cut=int(message.get("stderr_cut", 0)),
        traceback=None if traceback is None else str(traceback),
        answer=None if answer is None else Answer(str(answer["content"]), bool(answer["ready"])),
        variables=_names(message.get("variables")),
        unpicklable=[str(name) for name in message.get("unpicklable", [])],
        unpicklable_reasons={str(k): str(v) for k, v in reasons.items()},
        subcalls=int(message.get("subcalls", 0)),
        compute_s=float(message.get("compute_s", 0.0)),
    )


def _names(raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TypeError(f"expected an object of names, got {type(raw).__name__}")
    return {str(k): str(v) for k, v in raw.items()}
