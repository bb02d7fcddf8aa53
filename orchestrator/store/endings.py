"""A node's end in the store: its final status, the holds it still had, and the run's end with its root's.

One place for it: a node's workflow records its own end (``record_node``), and ``rlm abort`` records
the end of nodes whose workflows had already closed without recording one (terminated outside the
engine), both the same way."""

from __future__ import annotations

from sqlalchemy.orm import Session

from orchestrator.store.ledger import release_open
from orchestrator.store.repository import finish_node, set_run_status
from orchestrator.vocabulary import Status


def end_node(
    session: Session,
    *,
    run_id: str,
    node_id: str,
    status: Status,
    root: bool,
    answer_ref: str | None = None,
    error: str | None = None,
    release_holds: bool = True,
) -> None:
    """``finish_node`` (which refuses a status that is not final), then the rest of the ending."""
    finish_node(session, node_id, status=status, answer_ref=answer_ref, error=error)
    if release_holds:
        # A call that waited for a retry when the node ended kept its hold for that retry.
        release_open(session, run_id=run_id, key_prefix=f"{node_id}/")
    if root:
        set_run_status(session, run_id, status, error=error)
