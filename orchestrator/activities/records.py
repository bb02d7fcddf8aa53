"""``record_node``: the store's view of a node (status, answer, error) follows its workflow."""

from __future__ import annotations

import structlog
from temporalio import activity

from orchestrator.activities import texts
from orchestrator.activities.deps import Deps
from orchestrator.store import end_node, request_abort, set_node_status, set_run_status, unmark, upsert_node
from orchestrator.vocabulary import FINAL_STATUSES, NodeKind, Status
from orchestrator.workflows.types import NodeEvent

log = structlog.get_logger(__name__)


class RecordActivities:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def _write(self, event: NodeEvent) -> None:
        with self.deps.sessions.begin() as session:
            upsert_node(
                session,
                event.node_id,
                run_id=event.run_id,
                kind=event.kind,
                depth=event.depth,
                parent_id=event.parent_id,
            )
            root = event.kind == NodeKind.ROOT
            if event.status in FINAL_STATUSES:
                answer = texts.blob_ref(session, event.answer) if event.answer is not None else None
                end_node(
                    session, run_id=event.run_id, node_id=event.node_id, status=event.status, root=root,
                    answer_ref=answer, error=event.error, release_holds=event.release_holds,
                )  # fmt: skip
                if event.status == Status.ABORTED and event.kind != NodeKind.LEAF and event.release_holds:
                    # A node cancelled in Temporal alone (the Web UI, `temporal workflow cancel`, a
                    # schedule's overlap policy, its parent's end) is marked as `rlm abort` marks it, so
                    # the workers stop its subtree's calls in flight. A leaf records this once its call
                    # has stopped; a terminated child's end, which its parent records, leaves its call
                    # to settle.
                    request_abort(session, event.node_id)
            else:
                if event.starting:
                    # One cancelled because its parent was terminated can record its end (and mark
                    # itself) after a restart of the parent cleared the marks: it closes before this
                    # workflow of its id can start, so its mark is gone before any call of this one.
                    unmark(session, event.node_id)
                set_node_status(session, event.node_id, event.status, error=event.error)
                if root:
                    set_run_status(session, event.run_id, event.status, error=event.error)
        log.info("node.status", node_id=event.node_id, status=event.status, error=event.error)

    @activity.defn(name="record_node")
    async def record_node(self, event: NodeEvent) -> None:
        await self.deps.in_store(self._write, event)
