"""Run ids and tenant names: the rule, the visibility-query quoting (against the real dev server), and
the CLI refusing bad values with exit code 1 and the rule."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from orchestrator.ids import MAX_CHARS, RULE, BadId, check_run_id, check_tenant, quoted
from orchestrator.runs import RunRequest
from orchestrator.schedules import check_name
from orchestrator.workflows.common import SA_RUN_ID
from tests.ops.control.helpers import eventually, rlm


@pytest.mark.parametrize(
    "value",
    ["run-20261121-101500-ab12cd", "a", "nightly-2026-11-21T02:00:00Z", "T.x_y:z-0", "9" * MAX_CHARS],
)
def test_good_run_ids_and_tenants_pass(value: str) -> None:
    assert check_run_id(value) == value
    assert check_tenant(value) == value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("a/b", "has '/' at position 2"),
        ('run"1', "has '\"' at position 4"),
        ("run 1", "has ' ' at position 4"),
        ("ru\\n", "has '\\\\' at position 3"),
        ("-run", "starts with '-'"),
        (".run", "starts with '.'"),
        ("", "is empty"),
        ("x" * (MAX_CHARS + 1), f"has {MAX_CHARS + 1} characters"),
        ("é", "starts with 'é'"),
    ],
)
def test_bad_run_ids_name_the_character_and_the_rule(value: str, problem: str) -> None:
    with pytest.raises(BadId) as err:
        check_run_id(value)
    assert problem in str(err.value) and str(err.value).endswith(f"a run id is {RULE}")
    with pytest.raises(BadId, match="a tenant name is"):
        check_tenant(value)


def test_run_request_checks_both_where_a_run_is_asked_for(tmp_path: Path) -> None:
    with pytest.raises(BadId, match="run id 'x/0' has '/'"):
        RunRequest("q", tmp_path, run_id="x/0")
    with pytest.raises(BadId, match="tenant name 'a b' has ' '"):
        RunRequest("q", tmp_path, tenant="a b")
    assert RunRequest("q", tmp_path).run_id is None  # a generated id is valid by construction


def test_a_schedule_fire_run_id_is_a_valid_run_id() -> None:
    name = check_name("n" * 80)
    assert check_run_id(f"{name}-2026-11-21T02:00:00Z")


def test_quoted_escapes_backslash_and_double_quote() -> None:
    assert quoted("run-1") == '"run-1"'
    assert quoted('a"b') == '"a\\"b"'
    assert quoted("a\\b") == '"a\\\\b"'
    assert quoted('x\\" OR RlmRunId != "') == '"x\\\\\\" OR RlmRunId != \\""'


async def test_a_quoted_value_stays_one_condition_on_the_server(client: Client) -> None:
    """Without quoting, the hostile value would end the literal and match every workflow."""
    tag = uuid.uuid4().hex[:8]
    queue = f"nobody-{tag}"  # no worker: the workflows just stay running with their attributes
    values = {f"plain-{tag}": f"plain-{tag}", f"hostile-{tag}": f'x" OR RlmRunId != "{tag}'}
    handles = []
    for wid, value in values.items():
        attrs = TypedSearchAttributes([SearchAttributePair(SA_RUN_ID, value)])
        handles.append(await client.start_workflow("Nope", id=wid, task_queue=queue, search_attributes=attrs))
    try:
        unquoted = f'RlmRunId = "{values[f"hostile-{tag}"]}" AND TaskQueue = "{queue}"'

        async def visible() -> list[str] | None:
            ids = sorted([w.id async for w in client.list_workflows(unquoted)])
            return ids if len(ids) == 2 else None

        # The injection is real: the unquoted query matches both workflows.
        assert await eventually(visible, "both workflows in visibility") == sorted(values)
        hostile = f"RlmRunId = {quoted(values[f'hostile-{tag}'])} AND TaskQueue = {quoted(queue)}"
        assert f"plain-{tag}" not in [w.id async for w in client.list_workflows(hostile)]
        plain = [w.id async for w in client.list_workflows(f"RlmRunId = {quoted(f'plain-{tag}')}")]
        assert plain == [f"plain-{tag}"]
    finally:
        for handle in handles:
            await handle.terminate("test over")


async def test_cli_refuses_bad_run_ids_and_tenants(rlm_env: dict[str, str], tmp_path: Path) -> None:
    context = tmp_path / "c.txt"
    context.write_text("the magic number is 7")
    code, _, err = await rlm(rlm_env, "run", "q", "--context", str(context), "--run-id", "nightly/0")
    assert code == 1
    assert err.strip() == f"error: run id 'nightly/0' has '/' at position 8; a run id is {RULE}"
    code, _, err = await rlm(rlm_env, "submit", "q", "--context", str(context), "--run-id", 'r"1', "--detach")
    assert code == 1 and err.strip().startswith("error: run id 'r\"1' has '\"' at position 2;")
    code, _, err = await rlm(rlm_env, "run", "q", "--context", str(context), "--tenant", "acme corp")
    assert code == 1
    assert err.strip() == f"error: tenant name 'acme corp' has ' ' at position 5; a tenant name is {RULE}"
    code, _, err = await rlm(rlm_env, "tenant", "create", "acme/eu", "--budget-usd", "5")
    assert code == 1 and err.strip().startswith("error: tenant name 'acme/eu' has '/' at position 5;")
