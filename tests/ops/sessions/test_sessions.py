"""Sessions end to end (dev server, Docker sandbox, PostgreSQL, the scripted model running each question
as the REPL's code): documents as ``context``, variables carried from turn to turn, ``history``,
``notes`` and ``remember``, answers versioned by turn, ``rlm session show --json``, closing, tenants
kept apart, and a session budget that runs out pausing the turn like a run budget, nothing overshot."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from orchestrator import sessions as lib
from orchestrator.runs import ExitCode, settled
from orchestrator.settings import Settings
from orchestrator.store import create_tenant, get_node
from orchestrator.store.money import from_nanos
from orchestrator.store.sessions import NoSession, get_session, set_session_budget
from orchestrator.vocabulary import Status
from orchestrator.workflows.types import root_id
from tests.ops.jobs.cli import rlm

TURN_1 = """x = 41
remember("the secret is 42")
FINAL(f"{len(context)} docs {list(context.names)} h{len(history)} n{len(notes)}")
"""
TURN_2 = """FINAL(f"{x + 1}|{history[-1]['answer']}|{notes[0]}|{len(history)}")"""
TURN_3 = """remember("turn 3 note")
FINAL(f"{len(history)}|{len(notes)}|{x}")
"""


async def _turn(
    client: Client, sessions: sessionmaker[Session], settings: Settings, tenant: str, name: str, code: str
) -> tuple[str, str | None, str]:
    reply = await lib.ask(client, sessions, tenant, name, code, settings.task_queue)
    _, summary = await settled(sessions, reply.run_id, 180)
    return summary.status, summary.answer, reply.run_id


async def test_turns_build_on_each_other_and_tenants_never_meet(
    cli_env: dict[str, str],
    client: Client,
    sessions: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
) -> None:
    tenant, name = f"t{uuid.uuid4().hex[:6]}", "notes"
    other_tenant = f"o{uuid.uuid4().hex[:6]}"
    with sessions.begin() as s:
        create_tenant(s, tenant, Decimal(10))
        create_tenant(s, other_tenant, Decimal(10))
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "b.txt").write_text("beta")
    bad = await rlm(cli_env, "session", "create", "no/slash", "--tenant", tenant)
    assert bad.code == 1 and "session name 'no/slash' has '/'" in bad.err
    wide = await rlm(cli_env, "session", "create", "wide", "--tenant", tenant, "--compact-at", "2")
    assert wide.code == 1
    assert wide.err.strip().endswith("--compact-at 2 must be >= 0 and < 1 (0: never compact)")
    # A session's limits meet the same upper bounds as a run's: all its turns run with them.
    many = await rlm(cli_env, "session", "create", "many", "--tenant", tenant, "--concurrency", "1001")
    assert many.code == 1
    assert many.err.strip().endswith("--concurrency 1001 is out of range; give at most 1000")
    # A scripted model string its first turn's call would refuse is refused now, the session not made.
    typo = await rlm(cli_env, "session", "create", "typo", "--tenant", tenant, "--sub-model", "scripted/nope")
    assert typo.code == 1 and len(typo.err.strip().splitlines()) == 1, typo.err
    assert "error: scripted model 'scripted/nope': unknown policy 'nope'" in typo.err
    with sessions() as s, pytest.raises(NoSession):
        get_session(s, tenant, "typo")
    made = await rlm(
        cli_env, "session", "create", name, "--tenant", tenant, "--model", "scripted/code",
        "--max-iterations", "6", "--deadline", "240", "--context-window", "50000",
    )  # fmt: skip
    assert made.code == 0, made.err
    with sessions() as s:
        stored = get_session(s, tenant, name).limits
        assert (stored["max_iterations"], stored["deadline_s"], stored["context_window"]) == (6, 240.0, 50000)
    again = await rlm(cli_env, "session", "create", name, "--tenant", tenant)
    assert again.code == 1 and "already exists" in again.err and len(again.err.strip().splitlines()) == 1
    added = await rlm(
        cli_env, "session", "add", name, str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "--tenant", tenant
    )
    assert added.code == 0, added.err

    first = await rlm(cli_env, "ask", name, TURN_1, "--tenant", tenant, "--quiet", timeout_s=240)
    assert first.code == 0, first.err
    assert first.out.strip() == "2 docs ['a.txt', 'b.txt'] h0 n0"

    status, answer, _ = await _turn(client, sessions, settings, tenant, name, TURN_2)
    assert (status, answer) == (Status.COMPLETED, f"42|{first.out.strip()}|the secret is 42|1")
    status, answer, third = await _turn(client, sessions, settings, tenant, name, TURN_3)
    assert (status, answer) == (Status.COMPLETED, "2|1|41")

    shown = await rlm(cli_env, "session", "show", name, "--tenant", tenant, "--json")
    assert shown.code == 0, shown.err
    view = shown.json()
    assert [t["turn"] for t in view["turns"]] == [1, 2, 3]
    assert [t["answer"] for t in view["turns"]] == [
        first.out.strip(),
        f"42|{first.out.strip()}|the secret is 42|1",
        "2|1|41",
    ]
    assert view["turns"][2]["run_id"] == third and view["notes"] == 2 and view["documents"] == 2
    assert Decimal(view["spent_usd"]) > 0 and Decimal(view["spent_usd"]) == sum(
        Decimal(t["spent_usd"]) for t in view["turns"]
    )

    # Another tenant: the same name is unknown to it, in every command.
    for args in (("session", "show", name), ("ask", name, "FINAL('x')"), ("session", "close", name)):
        other = await rlm(cli_env, *args, "--tenant", other_tenant)
        assert other.code == 1 and f"no session '{name}' for tenant '{other_tenant}'" in other.err, other.err

    closed = await rlm(cli_env, "session", "close", name, "--tenant", tenant)
    assert closed.code == 0, closed.err
    refused = await rlm(cli_env, "ask", name, "FINAL('late')", "--tenant", tenant)
    assert refused.code == 1 and "is closed" in refused.err
    with sessions() as s:
        assert get_session(s, tenant, name).turns == 3  # nothing stored for the refused ask


async def test_a_spent_session_budget_pauses_the_turn_without_overshoot(
    client: Client, sessions: sessionmaker[Session], settings: Settings, cli_env: dict[str, str]
) -> None:
    tenant, name = f"t{uuid.uuid4().hex[:6]}", "tight"
    with sessions.begin() as s:
        create_tenant(s, tenant, Decimal(10))
    # One model call reserves its worst case (max_tokens of output), more than this budget holds.
    lib.create(
        sessions, tenant, name, model="scripted/code", sub_model="scripted/leaf", budget=Decimal("0.001")
    )
    reply = await lib.ask(client, sessions, tenant, name, "FINAL('never')", settings.task_queue)
    outcome, _ = await settled(sessions, reply.run_id, 120)
    assert outcome.code == ExitCode.PAUSED and outcome.paused == [root_id(reply.run_id)]
    with sessions() as s:
        row = get_session(s, tenant, name)
        assert row.spent_nanos + row.reserved_nanos <= row.budget_nanos
        assert f"rlm session budget {name} USD" in (get_node(s, root_id(reply.run_id)).error or "")
    # The operator raises the session's budget and resumes the held turn, which then answers.
    raised = await rlm(cli_env, "session", "budget", name, "1", "--tenant", tenant, "--json")
    assert raised.code == 0, raised.err
    assert json.loads(raised.out)["paused"] == [root_id(reply.run_id)]
    resumed = await rlm(cli_env, "resume", reply.run_id)
    assert resumed.code == 0, resumed.err
    # Through the pause: the store shows it until the node has taken the resume.
    outcome, summary = await settled(sessions, reply.run_id, 120, through_pauses=True)
    assert outcome.code == ExitCode.ANSWERED and summary.answer == "never"
    with sessions.begin() as s:
        row = get_session(s, tenant, name)
        assert row.reserved_nanos == 0 and row.spent_nanos > 0
        set_session_budget(s, row, from_nanos(row.spent_nanos))
    # A spent budget refuses the next question up front: no turn is registered.
    with pytest.raises(lib.SessionError, match="has spent its budget"):
        await lib.ask(client, sessions, tenant, name, "FINAL('no')", settings.task_queue)
    with sessions() as s:
        assert get_session(s, tenant, name).turns == 1
