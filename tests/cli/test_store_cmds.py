"""``rlm db current --json``, ``rlm price show``: the price a run is billed at, and where it comes from,
scripted models included; ``rlm price delete``: back to the price of the next source."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
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


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_price_delete_removes_a_registered_price(
    env: dict[str, str], backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":
        request.getfixturevalue("engine")  # migrates the session's PostgreSQL schema
        env = {**env, "RLM_DATABASE_URL": str(request.getfixturevalue("pg_schema_url"))}
    mine = f"acme/model-{uuid.uuid4().hex[:8]}"  # no other source prices it
    listed = "openai/gpt-5-mini"  # litellm's map does
    for model in (mine, listed):
        done = await rlm(env, "price", "set", model, "--input", "1e-7", "--output", "2e-7")
        assert done.code == 0, done.err

    deleted = await rlm(env, "price", "delete", mine)
    assert (deleted.code, deleted.err) == (0, ""), deleted
    assert deleted.out == (
        f"{mine}: deleted the registered price (input 0.0000001 USD/token, output 0.0000002 USD/token); "
        f"`rlm price show {mine}` shows the one runs use now\n"
    )
    as_json = await rlm(env, "price", "delete", listed, "--json")
    assert (as_json.code, as_json.err) == (0, ""), as_json
    assert as_json.json() == {
        "model": listed,
        "deleted": True,
        "input_usd_per_token": "0.0000001",
        "output_usd_per_token": "0.0000002",
    }

    # Gone: the model is priced from the next source again, or not at all.
    shown, unknown = await asyncio.gather(rlm(env, "price", "show", listed), rlm(env, "price", "show", mine))
    assert shown.code == 0 and shown.out.endswith("(from litellm's price map)\n"), shown
    assert unknown.code == 1 and f"no price known for model '{mine}'" in unknown.err, unknown

    # Nothing registered (any more, or ever): one line, nothing on stdout, exit 1.
    for model in (mine, "scripted/search"):
        again = await rlm(env, "price", "delete", model, "--json")
        lines = again.err.strip().splitlines()
        assert (again.code, again.out, len(lines)) == (1, "", 1), again
        assert lines[0] == (
            f"error: registered price for model '{model}' does not exist; check the name: "
            f"`rlm price show {model}` says where its price comes from"
        )
