"""Argument checks shared by the store's public functions; failures raise ``InvalidValue``."""

from __future__ import annotations

from decimal import Decimal

from orchestrator.store.errors import InvalidValue
from orchestrator.store.money import to_nanos
from orchestrator.vocabulary import NodeKind, Status


def text_id(value: str, what: str, max_len: int) -> str:
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise InvalidValue(
            f"{what} must be a non-empty string of at most {max_len} characters, got {value!r}"
        )
    return value


def status(value: str) -> str:
    try:
        return Status(value).value
    except ValueError:
        allowed = ", ".join(s.value for s in Status)
        raise InvalidValue(f"status {value!r} is not known; use one of: {allowed}") from None


def kind(value: str) -> str:
    try:
        return NodeKind(value).value
    except ValueError:
        raise InvalidValue(f"node kind {value!r} is not known; use root, rlm or leaf") from None


def nanos(amount: Decimal, what: str) -> int:
    try:
        return to_nanos(amount, what)
    except (TypeError, ValueError) as exc:
        raise InvalidValue(str(exc)) from None


def count(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidValue(f"{what} must be a whole number >= 0, got {value!r}")
    return value
