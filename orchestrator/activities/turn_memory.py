"""What a session turn's root finds in its REPL besides ``context``: ``history``, ``notes``,
``remember`` and, before its first cell, the variables the previous turn's root left.

Installed each time the root's sandbox session is opened (a new worker, a new container): the
runtime keeps these names out of its snapshots, so they are never stale and never stored twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import structlog
from sqlalchemy.orm import Session

import sandbox
from orchestrator.store import get_blob, latest_snapshot
from orchestrator.store.sessions import history, notes
from orchestrator.workflows.types import TurnSpec

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TurnMemory:
    payload: str  # JSON: {"history": [...], "notes": [...]}
    previous: bytes | None  # the previous turn's last REPL snapshot, when this root has none of its own
    fresh_answer: bool

    def install(self, opened: sandbox.SandboxSession) -> None:
        if self.previous is not None:
            opened.restore(self.previous)
        code = f"__rlm_session__({self.payload!r}, {self.fresh_answer!r})"
        done = opened.execute(code, _no_subcalls)
        if done.status != sandbox.CellStatus.OK:
            raise sandbox.SandboxError(f"the session turn's memory was not installed: {done.traceback}")


def _no_subcalls(req: sandbox.SubcallRequest) -> list[str]:
    raise sandbox.SubcallRefused("no sub-calls while a turn's memory is installed")


def turn_memory(db: Session, turn: TurnSpec | None, *, own_state: bool) -> TurnMemory | None:
    """None for a node that is not a session turn's root. ``own_state``: the root restores a snapshot of
    its own (a later cell, another worker), which already holds the previous turn's variables."""
    if turn is None:
        return None
    payload = json.dumps(
        {
            "history": history(db, turn.session_id, before=turn.turn),
            "notes": notes(db, turn.session_id, before=turn.turn),
        }
    )
    previous = None
    if not own_state and turn.previous_root is not None:
        snap = latest_snapshot(db, turn.previous_root)
        previous = None if snap is None else get_blob(db, snap.blob_sha)
        log.info("session.previous_turn", node_id=turn.previous_root, restored=previous is not None)
    return TurnMemory(payload, previous, fresh_answer=not own_state)
