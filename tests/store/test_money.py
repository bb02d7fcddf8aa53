"""Money conversions: exact, nano-dollar storage, rounding only upwards."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orchestrator.store.money import format_usd, from_nanos, parse_usd, to_nanos

D = Decimal


def test_nanos_roundtrip_and_round_up() -> None:
    assert to_nanos(D("0.01")) == 10_000_000
    assert from_nanos(to_nanos(D("123.456789012"))) == D("123.456789012")
    assert to_nanos(D("1e-10")) == 1
    assert to_nanos(D("2.0000000001")) == 2_000_000_001
    with pytest.raises(TypeError):
        to_nanos(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="too large"):
        to_nanos(D("1e11"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-1", "non-negative"),
        ("abc", "not a number"),
        ("inf", "non-negative"),
        ("0.0000000001", "below 0.000000001 USD"),
        ("1.0000000001", "9 decimal places"),
    ],
)
def test_parse_usd_refuses_bad_input(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_usd(text, "budget")


def test_format_usd() -> None:
    assert [format_usd(x) for x in (D("100"), D("0.010000000"), D("0E-9"), D("1.5e-7"))] == [
        "100",
        "0.01",
        "0",
        "0.00000015",
    ]
