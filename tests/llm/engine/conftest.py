"""Model failures driven through the whole engine: tests/orchestrator's session fixtures (dev server,
PostgreSQL schema, sandbox image, one in-process worker), registered here by import."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType

from orchestrator.workflows.types import root_id
from tests.orchestrator.conftest import (  # noqa: F401  (fixtures, registered by import)
    client,
    data_dir,
    engine,
    harness,
    pg_schema_url,
    sandbox_image,
    sessions,
    settings,
    temporal,
    worker,
)
from tests.orchestrator.harness import Harness


async def root_attempts(runs: Harness, run_id: str) -> list[int]:
    """The attempt each of the root's activities started last with (1: never retried)."""
    history = await runs.client.get_workflow_handle(root_id(run_id)).fetch_history()
    return [
        event.activity_task_started_event_attributes.attempt
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
