"""RLM_MAX_RUN_EVENTS and RLM_MAX_RUN_BYTES: a deployment whose Temporal server keeps histories under
other limits than the default 51,200 events and 50 MB says so once, where runs are started, and every
run and session turn started there carries it; a bad value is one line naming the variable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlalchemy.orm import sessionmaker

from orchestrator.cli.run_options import RunOptions, run_request
from orchestrator.settings import Settings, SettingsError, load_settings
from orchestrator.store import make_engine
from orchestrator.store.sessions import get_session
from orchestrator.workflows.types import Limits
from tests.foundation.conftest import cli_env
from tests.ops.jobs.cli import rlm


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A fresh data directory with its SQLite store, no Temporal, no warm CLI."""
    return cli_env(tmp_path / "data", RLM_WARM_CLI="0")


def test_the_settings_defaults_are_the_run_limits_defaults() -> None:
    for name in ("heartbeat_timeout_s", "max_run_events", "max_run_bytes"):
        assert getattr(Settings, name) == getattr(Limits(), name), name


def test_a_runs_history_limits_come_from_the_settings(env: dict[str, str], tmp_path: Path) -> None:
    context = tmp_path / "c.txt"
    context.write_text("a b c")
    default = run_request(load_settings(env), "q", [context], RunOptions()).request.limits
    assert (default.max_run_events, default.max_run_bytes) == (45_000, 45_000_000)

    lower = {**env, "RLM_MAX_RUN_EVENTS": "9000", "RLM_MAX_RUN_BYTES": "8000000"}
    limits = run_request(load_settings(lower), "q", [context], RunOptions()).request.limits
    assert (limits.max_run_events, limits.max_run_bytes) == (9_000, 8_000_000)
    # Nothing else moved.
    assert dataclasses.replace(limits, max_run_events=45_000, max_run_bytes=45_000_000) == default


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "RLM_MAX_RUN_EVENTS",
            "500",
            "RLM_MAX_RUN_EVENTS='500' must be a whole number from 1000 to 100000000",
        ),
        ("RLM_MAX_RUN_EVENTS", "lots", "RLM_MAX_RUN_EVENTS='lots' must be a whole number from 1000 to"),
        ("RLM_MAX_RUN_BYTES", "0", "RLM_MAX_RUN_BYTES='0' must be a whole number from 1000000 to"),
    ],
)
def test_a_bad_history_limit_names_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        load_settings({name: value})


async def test_a_sessions_turns_keep_the_limits_it_was_created_under(env: dict[str, str]) -> None:
    lower = {**env, "RLM_MAX_RUN_EVENTS": "12000", "RLM_MAX_RUN_BYTES": "20000000"}
    created = await rlm(lower, "session", "create", "notes")
    assert created.code == 0, created

    bad = await rlm({**env, "RLM_MAX_RUN_EVENTS": "12"}, "session", "create", "other")
    assert bad.code != 0 and bad.out == ""
    assert bad.err.strip().splitlines() == [
        "error: RLM_MAX_RUN_EVENTS='12' must be a whole number from 1000 to 100000000"
    ]

    engine = make_engine(load_settings(env).database_url)
    try:
        with sessionmaker(engine)() as s:
            stored = get_session(s, "default", "notes").limits
    finally:
        engine.dispose()
    assert (stored["max_run_events"], stored["max_run_bytes"]) == (12_000, 20_000_000)
