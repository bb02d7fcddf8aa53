"""Prices: registered (database) first, then the prices file, then a scripted model's string or litellm's
bundled map; never $0."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.llm.scripted_model import ScriptedModelError
from orchestrator.store import InvalidValue, ModelPrice, UnknownModelPrice, cost_of, price_for, set_price
from orchestrator.store.prices import PriceSource

D = Decimal


def test_litellm_map_with_and_without_provider_prefix(sessions: sessionmaker[Session]) -> None:
    import litellm

    entry = litellm.model_cost["gpt-5-mini"]
    with sessions() as s:
        for model in ("gpt-5-mini", "openai/gpt-5-mini"):
            price = price_for(s, model)
            assert price.source == "litellm"
            assert price.input_per_token == D(repr(entry["input_cost_per_token"]))
            assert price.output_per_token == D(repr(entry["output_cost_per_token"]))


def test_a_scripted_models_price_comes_from_its_string(sessions: sessionmaker[Session]) -> None:
    model = "scripted/leaf?price_in=0.5"
    with sessions() as s:
        assert price_for(s, model) == ModelPrice(D("5E-7"), D("0.000002"), PriceSource.SCRIPTED)
        assert price_for(s, "scripted/search") == ModelPrice(D("2.5E-7"), D("0.000002"), PriceSource.SCRIPTED)
        with pytest.raises(ScriptedModelError, match="unknown policy 'bogus'"):
            price_for(s, "scripted/bogus?price_in=1")
    with sessions.begin() as s:
        set_price(s, model, D("1e-7"), D("2e-7"))  # an operator's price still comes first
    with sessions() as s:
        assert price_for(s, model) == ModelPrice(D("1e-7"), D("2e-7"), PriceSource.REGISTERED)


def test_unknown_model_says_how_to_register(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, pytest.raises(UnknownModelPrice) as info:
        price_for(s, "acme/secret-model")
    assert info.value.model == "acme/secret-model"
    assert "rlm price set acme/secret-model --input" in str(info.value)


def test_registered_beats_file_beats_litellm(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"gpt-5-mini": {"input_per_token": "1e-7", "output_per_token": 3e-7}}))
    with sessions() as s:
        assert price_for(s, "gpt-5-mini", prices_file=prices) == ModelPrice(D("1e-7"), D("3e-7"), "file")
    with sessions.begin() as s:
        set_price(s, "gpt-5-mini", D("1.5e-7"), D("6e-7"))
    with sessions() as s:
        assert price_for(s, "gpt-5-mini", prices_file=prices) == ModelPrice(
            D("1.5e-7"), D("6e-7"), "registered"
        )
    with sessions.begin() as s:
        set_price(s, "gpt-5-mini", D("2e-7"), D("0"))  # replacing works; zero is an explicit, known price
    with sessions() as s:
        assert price_for(s, "gpt-5-mini").input_per_token == D("2e-7")
        assert price_for(s, "gpt-5-mini").output_per_token == D(0)


def test_toml_prices_file_and_bad_files(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    toml = tmp_path / "prices.toml"
    toml.write_text('["scripted/search"]\ninput_per_token = 1.5e-7\noutput_per_token = "6e-7"\n')
    with sessions() as s:
        assert price_for(s, "scripted/search", prices_file=toml) == ModelPrice(D("1.5e-7"), D("6e-7"), "file")
        bad = tmp_path / "bad.json"
        bad.write_text('{"m": {"input_per_token": 1}}')
        with pytest.raises(InvalidValue, match="output_per_token"):
            price_for(s, "m", prices_file=bad)
        with pytest.raises(InvalidValue, match="cannot be read"):
            price_for(s, "m", prices_file=tmp_path / "missing.json")
        bad.write_text("{not json")
        with pytest.raises(InvalidValue, match="not valid JSON"):
            price_for(s, "m", prices_file=bad)


def test_cost_of_is_exact() -> None:
    price = ModelPrice(D("1.5e-7"), D("6e-7"))
    assert cost_of(price, 1_000_000, 1_000) == D("0.1506")
    assert cost_of(price, 3, 0) == D("4.5e-7")
    with pytest.raises(InvalidValue):
        cost_of(price, -1, 0)


def test_bad_registered_prices_are_refused(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        for bad in (D(-1), "abc", D("Infinity")):
            with pytest.raises(InvalidValue):
                set_price(s, "m", bad, D(0))  # type: ignore[arg-type]
        # Past any real price, or past what the column keeps: refused, not stored (PostgreSQL refused
        # the 400-digit text with a DataError; SQLite kept it, and every call of the model then failed).
        with pytest.raises(InvalidValue, match=r"is more than 1000 USD per token"):
            set_price(s, "m", D("1e400"), D(0))
        with pytest.raises(InvalidValue, match=r"has more digits than a stored price keeps \(64 characters"):
            set_price(s, "m", D(0), D("1e-70"))
        assert set_price(s, "m", D(1000), D("1.5e-7")).input_per_token == D(1000)
