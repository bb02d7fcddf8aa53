"""The scripted models' prices in the store and in litellm agree, and the reservation estimate is exact."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from orchestrator.llm.complete import CompletionRequest, complete, count_prompt_tokens, prepare_model
from orchestrator.protocol.prompts import leaf_messages
from orchestrator.store import make_engine, make_session_factory
from orchestrator.store.migrate import upgrade
from orchestrator.store.prices import ModelPrice, PriceSource, cost_of, litellm_price, price_for


async def test_the_store_prices_a_scripted_model_as_litellm_reports_its_cost(tmp_path: Path) -> None:
    """The store reads a scripted model's price from its string, litellm from the entry the provider
    registers in its map: the two must agree, or a run's ledger and litellm's reported cost part."""
    engine = make_engine(f"sqlite:///{tmp_path / 'rlm.sqlite3'}")
    upgrade(engine)
    sessions = make_session_factory(engine)
    model = "scripted/leaf?price_in=0.3&price_out=1.2&latency_ms=0"
    messages = leaf_messages("Count the matches of the regex /o/ in the text after this line.\nfoo boo")
    with sessions() as session:
        price = price_for(session, model)  # before the provider registered anything
        assert (price.input_per_token, price.output_per_token) == (Decimal("3E-7"), Decimal("0.0000012"))
        assert price_for(session, "scripted/mapreduce").input_per_token == Decimal("2.5E-7")
    prepare_model(model)
    in_litellm = ModelPrice(price.input_per_token, price.output_per_token, PriceSource.LITELLM)
    assert litellm_price(model) == in_litellm
    result = await complete(CompletionRequest(model=model, messages=messages))
    assert result.text == "4"
    assert result.prompt_tokens == count_prompt_tokens(model, messages)
    assert result.reported_cost_usd is not None
    # litellm adds float prices; the ledger's exact Decimal cost agrees to far below a nano-dollar.
    exact = cost_of(price, result.prompt_tokens, result.completion_tokens)
    assert abs(exact - result.reported_cost_usd) < Decimal("1e-15")
    engine.dispose()
