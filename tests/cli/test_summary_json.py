"""``rlm status RUN --json`` and ``rlm wait RUN --json`` print a run's summary under the same keys, money
as the same plain USD text: a script reads either."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

from sqlalchemy import update

from orchestrator.settings import load_settings
from orchestrator.store import (
    create_run,
    create_tenant,
    make_engine,
    make_session_factory,
    set_run_status,
    upgrade,
)
from orchestrator.store.models import Run
from tests.ops.jobs.cli import rlm

SUMMARY = {
    "run_id",
    "status",
    "answer",
    "error",
    "cost_usd",
    "reserved_usd",
    "prompt_tokens",
    "completion_tokens",
    "nodes",
    "wall_s",
    "paused_nodes",
    "stopped_reason",
}


def _failed_run(data_dir: Path, run_id: str) -> None:
    """A run that failed after spending $0.000944 (nothing left reserved), in a fresh SQLite store."""
    engine = make_engine(load_settings({"RLM_DATA_DIR": str(data_dir)}).database_url)
    try:
        upgrade(engine)
        with make_session_factory(engine).begin() as s:
            create_tenant(s, "acme", Decimal("5"))
            create_run(s, run_id, tenant="acme")
            set_run_status(s, run_id, "failed", error="model call failed")
            s.execute(update(Run).where(Run.run_id == run_id).values(spent_nanos=944_000))
    finally:
        engine.dispose()


async def test_status_json_has_the_keys_and_money_of_wait_json(tmp_path: Path) -> None:
    _failed_run(tmp_path / "data", "r-1")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "RLM_"))}
    env.update({"RLM_DATA_DIR": str(tmp_path / "data"), "RLM_WARM_CLI": "0"})

    status = await rlm(env, "status", "r-1", "--json")
    waited = await rlm(env, "wait", "r-1", "--json")

    assert (status.code, status.err) == (0, ""), status
    assert waited.code == 2, waited  # failed
    shown, ended = status.json(), waited.json()
    assert set(shown) == SUMMARY
    assert set(ended) == SUMMARY | {"exit_code", "outcome"}
    assert ended["stopped_reason"] is None
    assert ended == {**shown, "exit_code": 2, "outcome": "failed"}
    assert (shown["cost_usd"], shown["reserved_usd"]) == ("0.000944", "0")
    assert (shown["status"], shown["error"], shown["nodes"]) == ("failed", "model call failed", 0)
