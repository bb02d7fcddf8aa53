"""``rlm wait``'s look at Temporal (``RootProbe``): a root closed in Temporal while the store shows the run
going ends the wait with ``STOPPED``; a root that recorded its end just before closing is read as that
end; a root Temporal does not have, or a Temporal that cannot be reached, leaves the wait on the store.
The terminated root itself, end to end through the CLI: ``tests/ops/control/test_abort_terminated.py``."""

from __future__ import annotations

import dataclasses
import socket
import uuid
from decimal import Decimal

from sqlalchemy.orm import Session, sessionmaker
from structlog.testing import capture_logs

from orchestrator.runs import ExitCode, RootProbe, wait_for_run
from orchestrator.settings import Settings
from orchestrator.store import create_run, create_tenant, set_run_status
from orchestrator.vocabulary import Status
from orchestrator.workflows.types import root_id


class _Closing(RootProbe):
    """Reports the root closed (``how``); first records ``ends_as`` in the store if given, as a root
    does just before it closes."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], run_id: str, how: str,
                 ends_as: Status | None) -> None:  # fmt: skip
        super().__init__(settings, run_id, every_s=0)
        self._sessions, self._how, self._ends_as = sessions, how, ends_as

    async def closed(self) -> str | None:
        if self._ends_as is not None:
            with self._sessions.begin() as s:
                set_run_status(s, self.run_id, self._ends_as)
        return self._how


def _running_run(sessions: sessionmaker[Session]) -> str:
    run_id = f"probe-{uuid.uuid4().hex[:10]}"
    with sessions.begin() as s:
        create_tenant(s, f"t-{run_id}", Decimal(1))
        create_run(s, run_id, tenant=f"t-{run_id}", status=Status.RUNNING)
    return run_id


async def test_a_root_closed_in_temporal_stops_the_wait_with_what_to_do(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    run_id = _running_run(sessions)
    probe = _Closing(settings, sessions, run_id, "terminated", ends_as=None)
    outcome = await wait_for_run(sessions, run_id, timeout_s=30, poll_s=0.05, probe=probe)
    assert (outcome.code, outcome.status, outcome.paused) == (ExitCode.STOPPED, Status.RUNNING, [])
    assert outcome.reason is not None and f"{root_id(run_id)} is terminated in Temporal" in outcome.reason
    assert f"`rlm resume {run_id}`" in outcome.reason and f"`rlm abort {run_id}`" in outcome.reason


async def test_a_root_that_recorded_its_end_before_closing_is_read_as_that_end(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    run_id = _running_run(sessions)
    probe = _Closing(settings, sessions, run_id, "completed", ends_as=Status.COMPLETED)
    outcome = await wait_for_run(sessions, run_id, timeout_s=30, poll_s=0.05, probe=probe)
    assert (outcome.code, outcome.status, outcome.reason) == (ExitCode.ANSWERED, Status.COMPLETED, None)


async def test_a_root_temporal_does_not_have_leaves_the_wait_on_the_store(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    run_id = _running_run(sessions)  # registered, its root never started: as a scheduled run's first moment
    probe = RootProbe(settings, run_id, every_s=0)
    with capture_logs() as logs:
        outcome = await wait_for_run(sessions, run_id, timeout_s=2, poll_s=0.05, probe=probe)
    assert outcome.code == ExitCode.STILL_RUNNING
    missing = [e for e in logs if e["event"] == "wait.root_missing"]
    assert len(missing) == 1 and "TEMPORAL_ADDRESS" in missing[0]["hint"]


async def test_an_unreachable_temporal_leaves_the_wait_on_the_store(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nowhere = dataclasses.replace(settings, temporal_address=f"127.0.0.1:{port}")
    run_id = _running_run(sessions)
    probe = RootProbe(nowhere, run_id, every_s=0)
    with capture_logs() as logs:
        outcome = await wait_for_run(sessions, run_id, timeout_s=2, poll_s=0.05, probe=probe)
    assert outcome.code == ExitCode.STILL_RUNNING
    said = [e for e in logs if e["event"] == "wait.temporal_unreachable"]
    assert len(said) == 1 and str(port) in said[0]["error"]
