"""The scripted models' prices reach the store's price lookup, and the reservation estimate is exact."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from orchestrator.llm.complete import CompletionRequest, complete, count_prompt_tokens, prepare_model
from orchestrator.protocol.prompts import leaf_messages
from orchestrator.store import make_engine, make_session_factory
from orchestrator.store.errors import UnknownModelPrice
from orchestrator.store.migrate import upgrade
from orchestrator.store.prices import cost_of, price_for


async def test_price_for_finds_a_prepared_scripted_model_and_matches_litellm_cost(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'rlm.sqlite3'}")
    upgrade(engine)
    sessions = make_session_factory(engine)
    model = "scripted/leaf?price_in=0.3&price_out=1.2&latency_ms=0"
    messages = leaf_messages("Count the matches of the regex /o/ in the text after this line.\nfoo boo")
    with sessions() as session:
        with pytest.raises(UnknownModelPrice):
            price_for(session, model)
        prepare_model(model)
        price = price_for(session, model)
        assert (price.input_per_token, price.output_per_token) == (Decimal("3E-7"), Decimal("0.0000012"))
        assert price_for(session, "scripted/mapreduce").input_per_token == Decimal("2.5E-7")
    result = await complete(CompletionRequest(model=model, messages=messages))
    assert result.text == "4"
    assert result.prompt_tokens == count_prompt_tokens(model, messages)
    assert result.reported_cost_usd is not None
    # litellm adds float prices; the ledger's exact Decimal cost agrees to far below a nano-dollar.
    exact = cost_of(price, result.prompt_tokens, result.completion_tokens)
    assert abs(exact - result.reported_cost_usd) < Decimal("1e-15")
    engine.dispose()
