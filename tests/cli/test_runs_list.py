"""``rlm runs``: the newest runs of the store as a table or JSON on stdout, filtered by tenant, status and
start; a bad filter is one error line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import update

from orchestrator.settings import load_settings
from orchestrator.store import (
    create_run,
    create_tenant,
    make_engine,
    make_session_factory,
    put_text,
    set_run_status,
    upgrade,
)
from orchestrator.store.models import Run

RLM = str(Path(sys.executable).parent / "rlm")


def _store(data_dir: Path) -> None:
    """Three runs an hour apart (the newest last), of two tenants, each with its query."""
    engine = make_engine(load_settings({"RLM_DATA_DIR": str(data_dir)}).database_url)
    start = datetime.now(UTC) - timedelta(hours=3)
    try:
        upgrade(engine)
        with make_session_factory(engine).begin() as s:
            create_tenant(s, "acme", Decimal("5"))
            create_tenant(s, "globex", Decimal("5"))
            runs = [
                ("r-old", "acme", "completed"),
                ("r-mid", "globex", "failed"),
                ("r-new", "acme", "running"),
            ]
            for i, (run_id, tenant, status) in enumerate(runs):
                query = put_text(s, f"Question {i}:\nhow many ERROR lines?  ")
                create_run(s, run_id, tenant=tenant, query_ref=query)
                set_run_status(s, run_id, status, error="model call failed" if status == "failed" else None)
                spent = 944_000 if run_id == "r-old" else 0  # $0.000944
                s.execute(
                    update(Run)
                    .where(Run.run_id == run_id)
                    .values(created_at=start + timedelta(hours=i), spent_nanos=spent)
                )
    finally:
        engine.dispose()


def _rlm(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "RLM_"))}
    env["RLM_DATA_DIR"] = str(data_dir)
    return subprocess.run([RLM, "runs", *args], env=env, capture_output=True, text=True, timeout=60)


def test_runs_are_listed_newest_first_with_their_filters(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _store(data)

    table = _rlm(data)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["RUN", "TENANT", "STATUS", "SPENT", "STARTED", "(UTC)", "WALL", "QUERY"]
    assert [line.split()[0] for line in lines[1:]] == ["r-new", "r-mid", "r-old"]
    assert "Question 2: how many ERROR lines?" in lines[1]  # one line, spaces folded
    assert lines[1].split()[1:3] == ["acme", "running"]

    listed = json.loads(_rlm(data, "--json").stdout)
    assert [(r["run_id"], r["tenant"], r["status"]) for r in listed] == [
        ("r-new", "acme", "running"),
        ("r-mid", "globex", "failed"),
        ("r-old", "acme", "completed"),
    ]
    assert listed[1]["error"] == "model call failed"
    # Money as plain decimal text, as everywhere else: not "0E-9" or "0.000944000".
    assert [r["cost"] for r in listed] == ["0", "0", "0.000944"]
    assert listed[0]["wall_s"] is None and listed[2]["wall_s"] is not None

    def ids(*args: str) -> list[str]:
        done = _rlm(data, "--json", *args)
        assert done.returncode == 0, done.stderr
        return [r["run_id"] for r in json.loads(done.stdout)]

    assert ids("--tenant", "acme") == ["r-new", "r-old"]
    assert ids("--status", "failed") == ["r-mid"]
    assert ids("--since", "90m") == ["r-new"]
    assert ids("--limit", "2") == ["r-new", "r-mid"]

    none = _rlm(data, "--status", "aborted")
    assert (none.returncode, none.stdout, none.stderr.strip()) == (0, "", "no runs match")


def test_a_bad_filter_is_one_error_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _store(data)
    for args, message in [
        (["--status", "done"], "status 'done' is not known; use one of: pending, running"),
        (["--tenant", "initech"], "tenant 'initech' does not exist; create it with `rlm tenant create"),
        (["--since", "yesterday"], "'yesterday' is not a duration; use e.g. 90s"),
        (["--limit", "0"], "--limit 0 must be from 1 to 100000"),
        # Past SQL's integers: checked before the query (it overflowed there).
        (["--limit", "99999999999999999999"], "--limit 99999999999999999999 must be from 1 to 100000"),
        (["--since", "99999999999d"], "--since 99999999999d is too long; give at most 36500d (100 years)"),
    ]:
        done = _rlm(data, *args)
        assert done.returncode == 1, args
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, done.stderr)
        assert message in lines[0], (args, lines[0])
