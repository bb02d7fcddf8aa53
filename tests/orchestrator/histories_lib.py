"""Reading a run's workflow histories back from Temporal (by the RlmRunId search attribute)."""

from __future__ import annotations

import asyncio

from temporalio.client import Client, WorkflowHistory


async def run_histories(
    client: Client, run_id: str, expected: int, timeout_s: float = 30.0
) -> list[WorkflowHistory]:
    """Every workflow of the run; waits for visibility to list ``expected`` of them."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    ids: list[str] = []
    while loop.time() < end:
        ids = [w.id async for w in client.list_workflows(f'RlmRunId = "{run_id}"')]
        if len(ids) >= expected:
            break
        await asyncio.sleep(0.3)
    if len(ids) < expected:
        raise AssertionError(f"visibility lists {len(ids)} workflows of run {run_id}, expected {expected}")
    return [await client.get_workflow_handle(wid).fetch_history() for wid in sorted(ids)]
