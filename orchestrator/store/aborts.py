"""Abort requests: ``rlm abort`` marks its target's top node before cancelling its workflows, and an
RLM node that records its end ``aborted`` (a cancel made in Temporal alone, its parent's end) marks
itself.

A model call in flight hears of Temporal's cancel late: a leaf's call runs inside its workflow's task,
which takes in nothing new until the call returns or the task's heartbeat (24 s by default), and a node's
``generate`` activity at its next heartbeat the SDK sends (up to 24 s by default). Each worker therefore
looks here once a second for the runs it is calling a model for (``activities.abort_watch``) and stops
the calls under a marked node. A restart of a node clears the marks above and below it, and a node
starting afresh its own (left by an earlier workflow of its id), so its new calls are not stopped.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from orchestrator.ids import in_subtree
from orchestrator.store._sql import rowcount
from orchestrator.store.models import Node, utcnow


def request_abort(session: Session, node_id: str) -> bool:
    """Mark ``node_id``: calls of its subtree in flight are to stop. False when the store has no such
    node yet (a run whose root has not started has no call to stop)."""
    stmt = (
        update(Node)
        .where(Node.node_id == node_id)
        .values(abort_requested_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return rowcount(session.execute(stmt)) > 0


def unmark(session: Session, node_id: str) -> None:
    """Clear ``node_id``'s own mark: an earlier workflow of its id left it, and this one is starting."""
    stmt = (
        update(Node)
        .where(Node.node_id == node_id, Node.abort_requested_at.is_not(None))
        .values(abort_requested_at=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(stmt)


def abort_requests(session: Session, run_ids: Collection[str]) -> list[str]:
    """The marked nodes of these runs."""
    if not run_ids:
        return []
    stmt = select(Node.node_id).where(Node.run_id.in_(run_ids), Node.abort_requested_at.is_not(None))
    return list(session.scalars(stmt))


def clear_abort_requests(session: Session, run_id: str, node_id: str) -> list[str]:
    """Unmark what would stop a restarted ``node_id``'s calls (its ancestors and itself) and what its
    subtree left (its descendants); returns the nodes unmarked."""
    cleared = [
        marked
        for marked in abort_requests(session, [run_id])
        if in_subtree(node_id, marked) or in_subtree(marked, node_id)
    ]
    if cleared:
        stmt = (
            update(Node)
            .where(Node.node_id.in_(cleared))
            .values(abort_requested_at=None)
            .execution_options(synchronize_session=False)
        )
        session.execute(stmt)
    return sorted(cleared)
