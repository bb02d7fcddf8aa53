"""``rlm abort`` stops the model calls it finds in flight, in both leaf modes and a node's own
``generate``: their holds go back and nothing is charged for them.

Temporal's cancel alone reaches a leaf's call only when it returns or at its workflow task's heartbeat
(about 8 s), and a ``generate`` activity at its next heartbeat (up to 8 s with these tests' 10 s
heartbeat timeout); so calls of ``CALL_MS`` would return, be recorded and be charged. The worker's
abort watch stops them within a second of the store's mark instead (``activities.abort_watch``).

A node cancelled in Temporal alone (the Web UI's *Request Cancellation*, a root or a sub-call) is marked
when it records its end, so its subtree's calls stop the same way; a ``generate`` also hears the cancel
through the activity's heartbeat when the marks cannot be read.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from orchestrator.activities.abort_watch import AbortWatch
from orchestrator.activities.deps import Deps
from orchestrator.activities.records import RecordActivities
from orchestrator.store import (
    abort_requests,
    create_run,
    create_tenant,
    get_node,
    get_run,
    list_nodes,
    list_steps,
    request_abort,
)
from orchestrator.store.models import LedgerEntry
from orchestrator.vocabulary import FINAL_STATUSES, LeafMode, NodeKind, Status
from orchestrator.workflows.types import Limits, NodeEvent, root_id
from tests.ops.control.helpers import eventually, leaves_in_flight, replay_all, rlm_json
from tests.orchestrator.harness import Harness, word_context

QUERY = "How many times does the word 'ERROR' appear? Use 8 chunks."
IN_FLIGHT = 4
CALL_MS = 6_000
# A node's own call, and its heartbeat timeout: Temporal's cancel would come with the beat 16 s into
# the call, past its end; until then `rlm abort` (a command of its own) and the watch have 10 s.
NODE_CALL_MS, NODE_HEARTBEAT_TIMEOUT_S = 12_000, 20
RLM_ABORT, TEMPORAL_CANCEL = "rlm abort", "temporal cancel"


async def every_node_ended(harness: Harness, run_id: str) -> None:
    async def ended() -> bool | None:
        with harness.sessions() as s:
            nodes = list_nodes(s, run_id)
        return True if all(n.status in FINAL_STATUSES for n in nodes) else None

    await eventually(ended, "every node of the cancelled run ended", timeout_s=30)


@pytest.mark.parametrize(
    ("leaf_mode", "how"),
    [
        (LeafMode.WORKFLOW, RLM_ABORT),
        (LeafMode.INLINE, RLM_ABORT),
        (LeafMode.WORKFLOW, TEMPORAL_CANCEL),
    ],
)
async def test_abort_stops_the_leaf_calls_in_flight_and_charges_none(
    harness: Harness, rlm_env: dict[str, str], tmp_path: Path, leaf_mode: LeafMode, how: str
) -> None:
    path, _ = word_context(tmp_path / "words.txt", 2_000)
    limits = Limits(max_concurrency=IN_FLIGHT, leaf_mode=leaf_mode, heartbeat_timeout_s=10)
    sub_model = f"scripted/leaf?latency_ms={CALL_MS}"
    handle = await harness.start(QUERY, path, model="scripted/mapreduce", sub_model=sub_model, limits=limits)
    run_id = handle.id.rsplit("/", 1)[0]

    async def calling() -> bool | None:
        return True if leaves_in_flight(harness.sessions, run_id) >= IN_FLIGHT else None

    await eventually(calling, f"{IN_FLIGHT} leaves calling their model", timeout_s=60)
    if how == RLM_ABORT:
        report = await rlm_json(rlm_env, "abort", run_id)
        assert report["still_running"] == []
    else:
        await handle.cancel()  # what the Web UI's Request Cancellation on the root sends
        await every_node_ended(harness, run_id)

    with harness.sessions() as s:
        run = get_run(s, run_id)
        leaves = [n for n in list_nodes(s, run_id) if n.kind == NodeKind.LEAF]
        leaf_steps = [step for leaf in leaves for step in list_steps(s, leaf.node_id)]
        root_steps = list_steps(s, root_id(run_id))
        assert (run.status, run.reserved_nanos) == (Status.ABORTED, 0)
        stopped = [n for n in leaves if n.status == Status.ABORTED]
        assert len(stopped) >= IN_FLIGHT, [(n.node_id, n.status) for n in leaves]
        assert all(n.cost == 0 for n in stopped)
        assert leaf_steps == []  # no call came back to be recorded: each was stopped
        # What the run spent is its root's model calls, none of the stopped ones.
        assert run.spent == sum((step.cost for step in root_steps), Decimal(0))
    ids = [w.id async for w in harness.client.list_workflows(f'RlmRunId = "{run_id}"')]
    assert await replay_all(harness.client, ids) == {}


async def test_aborting_one_node_stops_its_own_model_call_and_charges_nothing(
    harness: Harness, rlm_env: dict[str, str], tmp_path: Path
) -> None:
    """A node's ``generate`` hears Temporal's cancel only with its next heartbeat the SDK sends; until
    then the call runs on at the provider, which bills it. The worker's watch stops it within a second
    of the mark (its log says so), and the hold goes back."""
    path, _ = word_context(tmp_path / "words.txt", 4_000)
    handle = await harness.start(
        "How many times does the word 'ERROR' appear?",
        path,
        model="scripted/recurse",
        sub_model=f"scripted/recurse?latency_ms={NODE_CALL_MS}",
        limits=Limits(max_depth=1, heartbeat_timeout_s=NODE_HEARTBEAT_TIMEOUT_S),
    )
    run_id = handle.id.rsplit("/", 1)[0]
    child = f"{handle.id}.1"

    async def child_calling() -> bool | None:
        with harness.sessions() as s:
            held = s.scalars(
                select(LedgerEntry.reservation_id).where(LedgerEntry.idempotency_key == f"{child}/1/generate")
            ).all()
        return True if held else None

    await eventually(child_calling, f"{child}'s first model call", timeout_s=60)

    async def first_beat_sent() -> bool | None:
        desc = await harness.client.get_workflow_handle(child).describe()
        pending = desc.raw_description.pending_activities
        return True if pending and pending[0].HasField("last_heartbeat_time") else None

    # Temporal hands the cancel over only with a beat the SDK sends: the first goes out at once, 2 s
    # into the call, the next 16 s after it, past the call's end. Aborting after the first leaves the
    # worker's watch as the one thing that can stop the call in time, whatever the machine's speed.
    await eventually(
        first_beat_sent, f"{child}'s model call's first heartbeat", timeout_s=NODE_CALL_MS / 1000
    )
    with capture_logs() as logs:
        report = await rlm_json(rlm_env, "abort", child)
        assert report["still_running"] == []
        outcome = await harness.finish(handle)  # the root goes on without that sub-call's answer

    stopped = [e for e in logs if e["event"] == "model_call.aborted"]
    assert [(e["node_id"], e["marked"]) for e in stopped] == [(child, child)], logs

    assert outcome.result.status == Status.COMPLETED
    with harness.sessions() as s:
        (reservation,) = held = s.scalars(
            select(LedgerEntry.reservation_id).where(LedgerEntry.idempotency_key == f"{child}/1/generate")
        ).all()
        closing = s.scalars(
            select(LedgerEntry.kind).where(LedgerEntry.reservation_id == reservation, LedgerEntry.phase == 1)
        ).all()
        node = get_node(s, child)
        assert closing == ["release"], held  # closed unspent, not settled
        assert (node.status, node.cost) == (Status.ABORTED, Decimal(0))
        assert list_steps(s, child) == []  # the stopped reply was never recorded
        assert get_run(s, run_id).reserved_nanos == 0


async def test_a_cancel_made_in_temporal_reaches_a_sub_call_model_call_at_its_next_heartbeat(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the store's abort marks out of reach, only Temporal can stop a sub-call's 60 s model call
    once the sub-call is cancelled in the Web UI (or with ``temporal workflow cancel``): the
    ``generate`` activity heartbeats, and the cancel reaches it with the next beat the SDK sends (at
    most 0.8 heartbeat timeouts apart, 2.4 s here). The call is cut, not recorded, and its hold goes
    back."""

    def unreadable(self: AbortWatch, run_ids: object) -> list[str]:
        raise ConnectionError("the store is out of reach")

    monkeypatch.setattr(AbortWatch, "_marked", unreadable)
    path, _ = word_context(tmp_path / "words.txt", 4_000)
    handle = await harness.start(
        "How many times does the word 'ERROR' appear?",
        path,
        model="scripted/recurse",
        sub_model="scripted/recurse?latency_ms=60000",
        limits=Limits(max_depth=1, heartbeat_timeout_s=3),
    )
    run_id = handle.id.rsplit("/", 1)[0]
    child = f"{handle.id}.1"
    key = f"{child}/1/generate"

    def ledger() -> list[str]:
        with harness.sessions() as s:
            held = select(LedgerEntry.reservation_id).where(LedgerEntry.idempotency_key == key)
            return list(s.scalars(select(LedgerEntry.kind).where(LedgerEntry.reservation_id.in_(held))))

    async def calling() -> bool | None:
        return True if ledger() else None

    await eventually(calling, f"{child}'s first model call", timeout_s=60)
    # Past the first beat, which the SDK sends at once: the cancel must ride a later, throttled one.
    await asyncio.sleep(3)
    with capture_logs() as logs:
        await harness.client.get_workflow_handle(child).cancel()

        async def cut() -> bool | None:
            return True if any(e["event"] == "model_call.cancelled" for e in logs) else None

        await eventually(cut, "the model call cancelled", timeout_s=20)
        seen = [(e["event"], e.get("node_id")) for e in logs if e["event"].startswith("model_call.")]
    assert seen == [("model_call.cancelled", child)]  # the watch could not see the mark
    assert sorted(ledger()) == ["release", "reserve"]
    with harness.sessions() as s:
        assert list_steps(s, child) == []
        assert get_node(s, child).status == Status.ABORTED
    await handle.cancel()  # the root's next sub-calls would each take a minute
    await every_node_ended(harness, run_id)


async def test_a_sub_call_cancelled_in_temporal_stops_its_leaves_calls_and_charges_none(
    harness: Harness, tmp_path: Path
) -> None:
    """The Web UI's *Request Cancellation* of a sub-call whose leaves are calling: the sub-call marks
    itself as it records its end, and the workers stop its leaves' calls within a second. Temporal's
    cancel alone would reach them at their workflow task's heartbeat (about 8 s), after these 6 s calls
    returned and were charged. The rest of the tree goes on."""
    path, _ = word_context(tmp_path / "words.txt", 4_000)
    handle = await harness.start(
        "How many times does the word 'ERROR' appear?",
        path,
        model="scripted/recurse",
        sub_model=f"scripted/mapreduce?latency_ms={CALL_MS}&chunks={IN_FLIGHT}",
        limits=Limits(max_depth=1, heartbeat_timeout_s=10),
    )
    run_id = handle.id.rsplit("/", 1)[0]
    child = f"{handle.id}.1"

    def child_leaves() -> list[tuple[str, str]]:
        with harness.sessions() as s:
            nodes = list_nodes(s, run_id)
        return [(n.node_id, n.status) for n in nodes if n.kind == NodeKind.LEAF and n.parent_id == child]

    async def calling() -> bool | None:
        leaves = child_leaves()
        return True if sum(1 for _, status in leaves if status == Status.RUNNING) >= IN_FLIGHT else None

    await eventually(calling, f"{IN_FLIGHT} leaves of {child} calling their model", timeout_s=60)
    with capture_logs() as logs:
        await harness.client.get_workflow_handle(child).cancel()

        async def stopped() -> bool | None:
            return True if all(status in FINAL_STATUSES for _, status in child_leaves()) else None

        await eventually(stopped, f"the leaves of {child} ended", timeout_s=CALL_MS / 1000)
    aborted = sorted((e["node_id"], e["marked"]) for e in logs if e["event"] == "model_call.aborted")
    assert aborted == sorted((leaf, child) for leaf, _ in child_leaves()), logs
    with harness.sessions() as s:
        leaves = [get_node(s, leaf) for leaf, _ in child_leaves()]
        assert [(n.status, n.cost) for n in leaves] == [(Status.ABORTED, Decimal(0))] * IN_FLIGHT
        assert [step for n in leaves for step in list_steps(s, n.node_id)] == []
        assert get_node(s, child).status == Status.ABORTED
    await handle.cancel()  # the root's sibling sub-call and next iterations would take a while
    await every_node_ended(harness, run_id)
    with harness.sessions() as s:
        assert get_run(s, run_id).reserved_nanos == 0


async def test_which_recorded_ends_mark_a_node_and_a_fresh_start_clears_its_own_mark(
    harness: Harness,
) -> None:
    """An RLM node recording its own end ``aborted`` marks itself; a leaf (its call has stopped by then)
    and a terminated child whose parent records its end (its call is left to settle) do not. A node's
    first write of a fresh start clears the mark an earlier workflow of its id left (one cancelled
    because its parent was terminated can end after a restart of that parent cleared the marks), and
    nothing else does."""
    tenant, run_id = f"t-{uuid.uuid4().hex[:8]}", f"marks-{uuid.uuid4().hex[:8]}"
    with harness.sessions.begin() as s:
        create_tenant(s, tenant, Decimal(1))
        create_run(s, run_id, tenant=tenant)
    records = RecordActivities(
        Deps(settings=harness.settings, sessions=harness.sessions, client=harness.client, worker_id="marks")
    )
    root = root_id(run_id)

    def event(
        node_id: str,
        status: Status,
        kind: NodeKind = NodeKind.RLM,
        *,
        starting: bool = False,
        release_holds: bool = True,
    ) -> NodeEvent:
        parent = node_id.rsplit(".", 1)[0] if "." in node_id else None
        return NodeEvent(
            run_id=run_id, node_id=node_id, parent_id=parent, depth=node_id.count("."), kind=kind,
            status=status, tenant=tenant, starting=starting, release_holds=release_holds,
        )  # fmt: skip

    def marked() -> list[str]:
        with harness.sessions() as s:
            return sorted(abort_requests(s, [run_id]))

    await records.record_node(event(root, Status.RUNNING, NodeKind.ROOT, starting=True))
    for node_id in (f"{root}.1", f"{root}.2", f"{root}.3"):
        await records.record_node(event(node_id, Status.RUNNING, starting=True))
    await records.record_node(event(f"{root}.1.1", Status.RUNNING, NodeKind.LEAF))
    await records.record_node(event(f"{root}.1.1", Status.ABORTED, NodeKind.LEAF))
    await records.record_node(event(f"{root}.2", Status.ABORTED, release_holds=False))
    await records.record_node(event(f"{root}.3", Status.FAILED))
    assert marked() == []
    await records.record_node(event(f"{root}.1", Status.ABORTED))
    assert marked() == [f"{root}.1"]
    with harness.sessions.begin() as s:
        request_abort(s, root)  # `rlm abort RUN`
    await records.record_node(event(f"{root}.1", Status.RUNNING))  # a resume after a pause, say
    assert marked() == [root, f"{root}.1"]
    await records.record_node(event(f"{root}.1", Status.RUNNING, starting=True))
    assert marked() == [root]  # an ancestor's mark stays: the new workflow's calls are to stop too
