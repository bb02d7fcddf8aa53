"""A missing or rejected provider key ends the node at once through the whole engine: real dev server,
worker, Docker sandbox, PostgreSQL store, and litellm's real OpenAI path against a local endpoint that
answers 401. The root's ``generate`` and the leaves' ``leaf_call`` (both leaf modes) each ask once, or
not at all when no key is set, and the node's error names OPENAI_API_KEY.

The engine fixtures are tests/orchestrator's (see conftest.py): this folder gets its own dev server and
worker. The tests change the worker's environment only through monkeypatch.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from orchestrator.store import set_price
from orchestrator.workflows.types import Limits
from tests.chat_endpoint import ChatEndpoint
from tests.conftest import LEAF_MECHANISMS
from tests.llm.engine.conftest import root_attempts
from tests.llm.unauthorized import point_openai_at, unauthorized_endpoint
from tests.orchestrator.harness import Harness

# A self-hosted model litellm has no price for: registered in the store, as an operator would.
MODEL = "openai/rlm-auth-check"
# Retries would run into this deadline (ending the run timed_out) instead of the test's timeout.
DEADLINE_S = 60.0
REJECTED, MISSING = "sk-rejected", None


@pytest.fixture
def endpoint(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Iterator[ChatEndpoint]:
    with harness.sessions.begin() as session:
        set_price(session, MODEL, Decimal("1e-7"), Decimal("2e-7"))
    with unauthorized_endpoint() as served:
        yield served


@pytest.fixture
def context(tmp_path: Path) -> Path:
    path = tmp_path / "c.txt"
    path.write_text("alpha ERROR beta\ngamma ERROR delta\n")
    return path


@pytest.mark.parametrize("key", [REJECTED, MISSING], ids=["rejected", "missing"])
async def test_the_root_model_fails_at_once_naming_the_variable(
    harness: Harness, endpoint: ChatEndpoint, context: Path, monkeypatch: pytest.MonkeyPatch, key: str | None
) -> None:
    point_openai_at(monkeypatch, endpoint, key)

    out = await harness.run("How many times does 'ERROR' occur?", context, model=MODEL, deadline_s=DEADLINE_S)

    assert (out.result.status, out.summary.status) == ("failed", "failed")
    reason = out.result.error or ""
    if key is REJECTED:
        assert "model call failed (auth): the provider rejected the key in OPENAI_API_KEY (401" in reason
        assert endpoint.requests == 1  # final: asked once, never retried
    else:
        assert "model call failed (auth): OPENAI_API_KEY is not set: export it" in reason
        assert endpoint.requests == 0
    assert await root_attempts(harness, out.run_id) == [1]  # the one generate, never retried
    assert out.summary.cost == 0


@pytest.mark.parametrize("leaf_mode", LEAF_MECHANISMS)
@pytest.mark.parametrize("key", [REJECTED, MISSING], ids=["rejected", "missing"])
async def test_leaves_fail_at_once_naming_the_variable(
    harness: Harness,
    endpoint: ChatEndpoint,
    context: Path,
    monkeypatch: pytest.MonkeyPatch,
    key: str | None,
    leaf_mode: str,
) -> None:
    point_openai_at(monkeypatch, endpoint, key)

    out = await harness.run(
        "How many times does 'ERROR' occur? Use 2 chunks.",
        context,
        model="scripted/mapreduce",
        sub_model=MODEL,
        deadline_s=DEADLINE_S,
        limits=Limits(leaf_mode=leaf_mode, heartbeat_timeout_s=10),
    )

    leaves = [row for row in out.tree if row.kind == "leaf"]
    assert leaves, out.tree
    assert all(row.status == "failed" for row in leaves), leaves
    expected = "rejected the key in OPENAI_API_KEY (401" if key is REJECTED else "OPENAI_API_KEY is not set"
    assert all(expected in (row.error or "") for row in leaves), leaves
    # One request per leaf for a rejected key (no retry), none at all without a key.
    assert endpoint.requests == (len(leaves) if key is REJECTED else 0)
    assert out.summary.status != "timed_out"
