"""``rlm stuck`` sees leaf calls retrying: they are local activities (or, inline, inside their
parent), which Temporal's pending-activity view does not show; the store keeps their attempts."""

from __future__ import annotations

import warnings
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.workflow import UnfinishedUpdateHandlersWarning

from orchestrator.control import abort, parse_target
from orchestrator.store import UnknownTenant, create_tenant
from orchestrator.stuck import StuckNode, stuck
from orchestrator.workflows.types import Limits
from tests.conftest import LEAF_MECHANISMS
from tests.ops.control.helpers import eventually
from tests.orchestrator.harness import Harness, word_context


@pytest.mark.parametrize("leaf_mode", LEAF_MECHANISMS)
async def test_stuck_lists_leaf_calls_retrying_past_the_attempt_count(
    harness: Harness, tmp_path: Path, leaf_mode: str
) -> None:
    path, _ = word_context(tmp_path / "w.txt", 1_000)
    handle = await harness.start(
        "How many times does the word 'ERROR' appear? Use 2 chunks.",
        path,
        model="scripted/mapreduce",
        sub_model="scripted/fail_server",
        limits=Limits(leaf_mode=leaf_mode, heartbeat_timeout_s=10),
    )
    run_id = handle.id.rsplit("/", 1)[0]

    async def retrying() -> list[StuckNode] | None:
        found = await stuck(harness.client, harness.sessions, idle_s=3600, attempts=3, run_id=run_id)
        return found if len(found) == 2 else None

    leaves = await eventually(retrying, "both leaf calls on their third attempt", timeout_s=45)
    assert [n.node_id for n in leaves] == [f"{run_id}/0.1", f"{run_id}/0.2"]
    for node in leaves:
        assert node.status == "running" and node.run_id == run_id
        assert node.reason.startswith("model call on attempt "), node.reason
        assert "server: " in node.reason
    # A higher bar lists nothing yet; another tenant's view never sees this run.
    assert await stuck(harness.client, harness.sessions, idle_s=3600, attempts=50, run_id=run_id) == []
    with harness.sessions.begin() as s:
        create_tenant(s, f"other-{run_id}", Decimal(1))
    assert (
        await stuck(harness.client, harness.sessions, idle_s=3600, attempts=3, tenant=f"other-{run_id}") == []
    )
    with pytest.raises(UnknownTenant):  # a mistyped tenant is not one with nothing stuck
        await stuck(harness.client, harness.sessions, idle_s=3600, attempts=3, tenant="nobody")

    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        report = await abort(harness.client, harness.sessions, parse_target(run_id))
    assert report.still_running == []
    # The node ended with its cell's sub-call waiting: that sub-call is abandoned, without the SDK's warning.
    assert not [w for w in warned if issubclass(w.category, UnfinishedUpdateHandlersWarning)], warned
    assert await stuck(harness.client, harness.sessions, idle_s=3600, attempts=3, run_id=run_id) == []
