"""``rlm db``, ``rlm tenant`` and ``rlm price`` on both backends: results, one-line errors, exit code 1."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from orchestrator.cli import app
from orchestrator.store import ledger_sums, make_engine, make_session_factory, tenant_usage

runner = CliRunner()


def rlm(db_url: str, *args: str, **env: str) -> Result:
    return runner.invoke(app, list(args), env={"RLM_DATABASE_URL": db_url, **env})


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_db_upgrade_and_current(db_url: str) -> None:
    assert "none (head is" in rlm(db_url, "db", "current").stdout
    assert rlm(db_url, "db", "upgrade").exit_code == 0
    assert rlm(db_url, "db", "upgrade").exit_code == 0  # idempotent
    assert rlm(db_url, "db", "current").stdout.strip().endswith("(head)")
    assert rlm(db_url, "db", "downgrade", "base").exit_code == 0
    assert "none (head is" in rlm(db_url, "db", "current").stdout


def test_unmigrated_database(db_url: str) -> None:
    created = rlm(db_url, "tenant", "create", "a", "--budget-usd", "1")
    if db_url.startswith("sqlite"):
        # The zero-setup default is migrated on first use.
        assert created.exit_code == 0, created.output
        assert rlm(db_url, "db", "current").stdout.strip().endswith("(head)")
    else:
        # Upgrading a production database is the operator's call.
        assert_one_line_error(created, "rlm db upgrade")
        assert "none (head is" in rlm(db_url, "db", "current").stdout


def test_tenant_commands(db_url: str) -> None:
    assert rlm(db_url, "db", "upgrade").exit_code == 0
    created = rlm(db_url, "tenant", "create", "acme", "--budget-usd", "10")
    assert created.exit_code == 0, created.output
    assert created.stdout.strip() == "acme: limit 10 USD, spent 0, reserved 0, remaining 10"
    assert rlm(db_url, "tenant", "create", "beta", "--budget-usd", "0.5").exit_code == 0
    raised = rlm(db_url, "tenant", "set-budget", "acme", "12.25")
    assert raised.exit_code == 0 and "limit 12.25 USD" in raised.stdout
    shown = rlm(db_url, "tenant", "show")
    assert shown.stdout.splitlines() == [
        "acme: limit 12.25 USD, spent 0, reserved 0, remaining 12.25",
        "beta: limit 0.5 USD, spent 0, reserved 0, remaining 0.5",
    ]
    assert rlm(db_url, "tenant", "show", "beta").stdout.startswith("beta: limit 0.5 USD")

    assert_one_line_error(rlm(db_url, "tenant", "create", "acme", "--budget-usd", "1"), "already exists")
    assert_one_line_error(rlm(db_url, "tenant", "create", "c", "--budget-usd", "-1"), "negative")
    assert_one_line_error(rlm(db_url, "tenant", "create", "c", "--budget-usd", "ten"), "not a number")
    assert_one_line_error(rlm(db_url, "tenant", "set-budget", "acme", "-5"), "negative")
    assert_one_line_error(rlm(db_url, "tenant", "set-budget", "acme", "1e999999"), "budget")
    assert_one_line_error(rlm(db_url, "tenant", "set-budget", "nobody", "5"), "rlm tenant create nobody")
    assert_one_line_error(rlm(db_url, "tenant", "show", "nobody"), "does not exist")

    # Nothing half-written: the refused commands left the tenants as they were.
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as s:
            assert tenant_usage(s, "acme").limit == Decimal("12.25")
            assert ledger_sums(s, tenant="acme").spent == 0
        names = [line.split(":")[0] for line in rlm(db_url, "tenant", "show").stdout.splitlines()]
        assert names == ["acme", "beta"]
    finally:
        engine.dispose()


def test_price_commands(db_url: str, tmp_path: Path) -> None:
    assert rlm(db_url, "db", "upgrade").exit_code == 0
    shown = rlm(db_url, "price", "show", "openai/gpt-5-mini")
    assert shown.exit_code == 0 and shown.stdout.strip().endswith("(from litellm's price map)")
    assert_one_line_error(rlm(db_url, "price", "show", "acme/nothing"), "rlm price set acme/nothing")
    assert_one_line_error(
        rlm(db_url, "price", "set", "m", "--input", "-1", "--output", "1e-7"), "input price"
    )
    assert_one_line_error(
        rlm(db_url, "price", "set", "m", "--input", "x", "--output", "1e-7"), "not a number"
    )
    ok = rlm(db_url, "price", "set", "acme/nothing", "--input", "1.5e-7", "--output", "6e-7")
    assert ok.exit_code == 0, ok.output
    shown = rlm(db_url, "price", "show", "acme/nothing")
    assert shown.stdout.strip() == (
        "acme/nothing: input 0.00000015 USD/token, output 0.0000006 USD/token "
        "(registered with `rlm price set`)"
    )
    prices = tmp_path / "prices.json"
    prices.write_text('{"file/model": {"input_per_token": "1e-6", "output_per_token": "2e-6"}}')
    from_file = rlm(db_url, "price", "show", "file/model", RLM_PRICES_FILE=str(prices))
    assert from_file.exit_code == 0
    assert from_file.stdout.strip().endswith("(from the prices file, RLM_PRICES_FILE)")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("postgresql+psycopg://rlm:rlm@127.0.0.1:1/none", "cannot connect"),
        ("postgresql+psycopg://rlm:wrong-password@127.0.0.1:5432/rlm_test", "cannot connect"),
        ("mysql://x/y", "supports sqlite and postgresql"),
        ("not a url", "not valid"),
    ],
)
def test_unusable_database_urls(url: str, fragment: str) -> None:
    assert_one_line_error(rlm(url, "tenant", "show"), fragment)
    assert_one_line_error(rlm(url, "db", "upgrade"), fragment)
