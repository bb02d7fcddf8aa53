"""Store errors. Each carries its data as attributes and says in its message how to fix the cause."""

from __future__ import annotations

from decimal import Decimal

from orchestrator.errors import RlmError
from orchestrator.store.money import format_usd


class StoreError(RlmError):
    """Base class of every error raised by ``orchestrator.store``."""


class DatabaseUnreachable(StoreError):
    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"cannot connect to the database {url}: {reason}; "
            "check RLM_DATABASE_URL and that the database server is running"
        )


class SchemaError(StoreError):
    """The database schema does not match this version of durable-rlm."""


class SchemaOutdated(SchemaError):
    def __init__(self, url: str, current: str | None, head: str) -> None:
        self.url = url
        self.current = current
        self.head = head
        state = "has no durable-rlm schema" if current is None else f"is at schema revision {current}"
        super().__init__(f"database {url} {state}, this version needs {head}; run `rlm db upgrade`")


class SchemaTooNew(SchemaError):
    def __init__(self, url: str, current: str) -> None:
        self.url = url
        self.current = current
        super().__init__(
            f"database {url} is at schema revision {current}, "
            "which this version of durable-rlm does not know; upgrade durable-rlm"
        )


class NotFound(StoreError):
    def __init__(self, kind: str, name: str, hint: str = "") -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind} {name!r} does not exist" + (f"; {hint}" if hint else ""))


class UnknownTenant(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__("tenant", name, f"create it with `rlm tenant create {name} --budget-usd AMOUNT`")


class AlreadyExists(StoreError):
    def __init__(self, kind: str, name: str, hint: str = "") -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind} {name!r} already exists" + (f"; {hint}" if hint else ""))


class InvalidValue(StoreError, ValueError):
    """A caller passed a value the store refuses (negative budget, unknown status, too-long id...)."""


class BlobCorrupt(StoreError):
    def __init__(self, sha256: str, reason: str) -> None:
        self.sha256 = sha256
        super().__init__(f"blob {sha256} is corrupt: {reason}")


class BudgetExhausted(StoreError):
    """A reservation would take ``spent + reserved`` of a budget above its limit."""

    def __init__(
        self,
        *,
        scope: str,
        name: str,
        limit: Decimal,
        spent: Decimal,
        reserved: Decimal,
        requested: Decimal,
    ) -> None:
        self.scope = scope
        self.name = name
        self.limit = limit
        self.spent = spent
        self.reserved = reserved
        self.requested = requested
        remaining = limit - spent - reserved
        # A session's name needs its tenant too, which `rlm session budget` takes as --tenant.
        command = f"rlm session budget {name}" if scope == "session" else f"rlm budget raise --{scope} {name}"
        fix = f"{command} USD"
        super().__init__(
            f"{scope} budget of {name!r} exhausted: limit {format_usd(limit)} USD, "
            f"spent {format_usd(spent)}, reserved {format_usd(reserved)}, "
            f"remaining {format_usd(remaining)}, requested {format_usd(requested)}; "
            f"raise it with `{fix}`, then `rlm resume` the paused nodes"
        )

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructor: make pickling (e.g. across process pools) rebuild it faithfully.
        return (
            _rebuild_budget_exhausted,
            (self.scope, self.name, self.limit, self.spent, self.reserved, self.requested),
        )


def _rebuild_budget_exhausted(
    scope: str, name: str, limit: Decimal, spent: Decimal, reserved: Decimal, requested: Decimal
) -> BudgetExhausted:
    return BudgetExhausted(
        scope=scope, name=name, limit=limit, spent=spent, reserved=reserved, requested=requested
    )


class ReservationClosed(StoreError):
    """``settle`` on a reservation that was already released: the spend must not vanish silently."""

    def __init__(self, reservation_id: str, closed_as: str) -> None:
        self.reservation_id = reservation_id
        self.closed_as = closed_as
        super().__init__(
            f"reservation {reservation_id} was already {closed_as}d; reserve again before settling a new call"
        )


class UnknownModelPrice(StoreError):
    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(
            f"no price known for model {model!r}; register it with "
            f"`rlm price set {model} --input USD_PER_INPUT_TOKEN --output USD_PER_OUTPUT_TOKEN` "
            "or in the file named by RLM_PRICES_FILE"
        )
