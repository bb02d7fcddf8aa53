"""Exact USD amounts: ``Decimal`` in every API, whole nano-dollars (int) in the database.

SQLite has no exact NUMERIC type, so the ledger stores integers. One nano-dollar (1e-9 USD) is fine
enough for per-call costs and leaves room for budgets up to ~9.2e9 USD in a signed 64-bit column.
Amounts finer than a nano-dollar (a few tokens at a tiny per-token price) are rounded *up*, so a
reservation or a settlement can only ever over-count by less than one nano-dollar, never under-count.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, InvalidOperation, localcontext

from orchestrator.errors import RlmError

NANOS_PER_USD = 10**9
MAX_NANOS = 2**63 - 1


class AmountError(RlmError, ValueError):
    """A USD amount that is not a finite, non-negative number of whole nano-dollars in range (still a
    ``ValueError``: callers and tests of these number helpers catch that)."""


def _check_decimal(amount: object, what: str) -> Decimal:
    # A float here would already have lost exactness; refuse it instead of rounding silently.
    if not isinstance(amount, Decimal):
        raise TypeError(f"{what} must be a decimal.Decimal, got {type(amount).__name__}")
    if not amount.is_finite():
        raise AmountError(f"{what} must be a finite number, got {amount}")
    return amount


def to_nanos(amount: Decimal, what: str = "amount") -> int:
    """Convert USD to whole nano-dollars, rounding up; negative amounts are refused."""
    amount = _check_decimal(amount, what)
    if amount < 0:
        raise AmountError(f"{what} must be >= 0, got {amount}")
    # Compare before multiplying: a huge exponent would overflow the decimal context.
    if amount > from_nanos(MAX_NANOS):
        raise AmountError(f"{what} {amount} USD is too large (maximum {from_nanos(MAX_NANOS)} USD)")
    with localcontext() as ctx:
        ctx.prec = 60
        return int((amount * NANOS_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def from_nanos(nanos: int) -> Decimal:
    return Decimal(nanos).scaleb(-9)


def parse_usd(text: str, what: str = "amount", *, positive: bool = False) -> Decimal:
    """Parse a user-typed USD amount exactly; ``positive``: more than 0 (an amount to add), else 0 or
    more (a budget). The ledger holds whole nano-USD and rounds anything finer up, so a budget of 1e-30
    would silently become 0.000000001: an amount it cannot keep exactly is refused, never rounded."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise AmountError(f"{what} {text!r} is not a number; give USD like 0.50") from None
    if not value.is_finite() or value < 0 or (positive and value == 0):
        kind = "more than 0 USD" if positive else "a non-negative amount of USD"
        raise AmountError(f"{what} {text!r} must be {kind}, e.g. 5 or 0.50")
    nanos = to_nanos(value, what)  # one the ledger cannot hold at all is refused here
    if from_nanos(nanos) == value:
        return value
    smallest = format_usd(from_nanos(1))
    refused = "the ledger would round it up, so it is refused"
    if nanos == 1:
        raise AmountError(
            f"{what} {text!r} is below {smallest} USD, the smallest amount the ledger keeps ({refused}); "
            f"give at least {smallest}"
        )
    raise AmountError(
        f"{what} {text!r} has more than 9 decimal places, finer than the ledger's {smallest} USD "
        f"({refused}); round it to 9 places"
    )


def format_usd(amount: Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros, e.g. ``0.01`` or ``100``."""
    text = f"{amount.normalize():f}"
    return "0" if text in ("-0", "0") else text
