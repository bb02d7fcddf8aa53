"""``rlm stuck --run RUN`` names an unknown run as such (one line, exit 1) instead of listing nothing, which
would read as "that run has nothing stuck"."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy.orm import Session, sessionmaker

from orchestrator.store import create_run, create_tenant
from tests.ops.jobs.cli import rlm


async def test_stuck_refuses_a_run_that_does_not_exist(
    cli_env: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    known, unknown = f"stuck-{uuid.uuid4().hex[:8]}", f"nosuch-{uuid.uuid4().hex[:8]}"
    with sessions.begin() as s:
        create_tenant(s, known, Decimal(1))
        create_run(s, known, tenant=known)

    missing = await rlm(cli_env, "stuck", "--run", unknown)
    assert (missing.code, missing.out) == (1, ""), missing
    assert missing.err.strip() == f"error: run '{unknown}' does not exist; check the id with `rlm runs`"

    # A run that exists (with nothing running) has nothing stuck.
    for args in ([], ["--json"]):
        found = await rlm(cli_env, "stuck", "--run", known, *args)
        assert (found.code, found.err) == (0, ""), found
        assert found.out == ('{"stuck": []}\n' if args else "no stuck nodes\n")
