"""``rlm db current --json`` and ``rlm price show``: the price a run is billed at, and where it comes from,
scripted models included."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from tests.ops.jobs.cli import rlm


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A fresh data directory with its SQLite store, no Temporal, no warm CLI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "RLM_"))}
    env.update({"RLM_DATA_DIR": str(tmp_path / "data"), "RLM_WARM_CLI": "0"})
    return env


async def test_db_current_json_is_one_document(env: dict[str, str]) -> None:
    text, doc = await asyncio.gather(rlm(env, "db", "current"), rlm(env, "db", "current", "--json"))
    assert doc.code == 0 and doc.err == "", doc
    current = json.loads(doc.out)
    assert set(current) == {"current", "head", "at_head"}
    # `rlm db current` migrates nothing; whatever the store is at, both forms say the same.
    assert current["at_head"] is (current["current"] == current["head"])
    head = current["head"]
    assert text.out.startswith(
        f"{head} (head)" if current["at_head"] else f"{current['current'] or 'none'} ("
    )


async def test_price_show_gives_the_price_a_run_is_billed_at(env: dict[str, str]) -> None:
    cases = {
        "scripted/search": ("0.00000025", "0.000002", "scripted", "the scripted models' default price"),
        "scripted/leaf?price_in=3&price_out=15": (
            "0.000003", "0.000015", "scripted", "the model string's price_in/price_out"
        ),
        "scripted/leaf?price_in=3": (
            "0.000003", "0.000002", "scripted", "the model string's price_in, else the scripted default"
        ),
    }  # fmt: skip
    for model, (given_in, given_out, source, words) in cases.items():
        text, doc = await asyncio.gather(
            rlm(env, "price", "show", model), rlm(env, "price", "show", model, "--json")
        )
        assert text.code == 0, text.err
        assert text.out == f"{model}: input {given_in} USD/token, output {given_out} USD/token ({words})\n"
        assert json.loads(doc.out) == {
            "model": model,
            "input_usd_per_token": given_in,
            "output_usd_per_token": given_out,
            "source": source,
        }
    listed = await rlm(env, "price", "show", "openai/gpt-5-mini")
    assert listed.code == 0 and listed.out.endswith("(from litellm's price map)\n"), listed

    registered = await rlm(env, "price", "set", "scripted/search", "--input", "1e-7", "--output", "2e-7")
    assert registered.code == 0, registered.err
    shown = await rlm(env, "price", "show", "scripted/search")
    assert shown.out == (
        "scripted/search: input 0.0000001 USD/token, output 0.0000002 USD/token "
        "(registered with `rlm price set`)\n"
    )


async def test_price_show_refuses_what_a_run_could_not_price(env: dict[str, str]) -> None:
    bad, unknown = await asyncio.gather(
        rlm(env, "price", "show", "scripted/bogus"), rlm(env, "price", "show", "acme/secret")
    )
    for done, said in ((bad, "unknown policy 'bogus'"), (unknown, "no price known for model 'acme/secret'")):
        lines = done.err.strip().splitlines()
        assert done.code == 1 and done.out == "" and len(lines) == 1, done
        assert lines[0].startswith("error: ") and said in lines[0], lines
