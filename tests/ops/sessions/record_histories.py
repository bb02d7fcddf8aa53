"""Record the histories of a session's workflow for the replay test:
``python -m tests.ops.sessions.record_histories``.

One session of three turns whose workflow continues as new every two turns, then closed: both runs
of ``RLMSession`` and the first turn's root (an ``RLMNode`` with a session turn in its input) go to
tests/ops/sessions/histories/<workflow>-<n>.json. On an embedded dev server with a PostgreSQL schema
of its own. Nothing is released yet: after a deliberate change to the workflow code, delete the files
and record again.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from sqlalchemy import create_engine, text
from temporalio.client import Client

from orchestrator import sessions as lib
from orchestrator.devstack import DevServer, DevServerConfig
from orchestrator.runs import settled
from orchestrator.settings import load_settings
from orchestrator.store import create_tenant, make_engine, make_session_factory, upgrade
from orchestrator.worker import running_worker
from orchestrator.workflows.session import session_workflow_id
from orchestrator.workflows.types import root_id
from tests.conftest import test_database_url

OUT = Path(__file__).parent / "histories"
TURNS = ('x = 1\nremember("one")\nFINAL(str(x))', "x += 1\nFINAL(f'{x} {notes}')", "FINAL(str(len(history)))")


async def record(data: Path, url: str) -> None:
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    with DevServer(DevServerConfig(data_dir=data / "temporal", ui=False)) as server:
        settings = replace(
            load_settings({**os.environ, "RLM_DATA_DIR": str(data), "RLM_DATABASE_URL": url}),
            temporal_address=server.address,
        )
        client = await Client.connect(server.address)
        with sessions.begin() as s:
            create_tenant(s, "rec", Decimal(10))
        lib.create(sessions, "rec", "replay", model="scripted/code", sub_model="scripted/leaf")
        async with running_worker(client, settings):
            first = ""
            for code in TURNS:
                reply = await lib.ask(
                    client, sessions, "rec", "replay", code, settings.task_queue, turns_per_run=2
                )
                first = first or reply.run_id
                await settled(sessions, reply.run_id, 120)
            await lib.close(client, sessions, "rec", "replay")
            wid = session_workflow_id("rec", "replay")
            await client.get_workflow_handle(wid).result()
            runs = [w.run_id async for w in client.list_workflows(f'WorkflowId = "{wid}"')]
            OUT.mkdir(exist_ok=True)
            for n, run_id in enumerate(sorted(runs)):
                history = await client.get_workflow_handle(wid, run_id=run_id).fetch_history()
                (OUT / f"session-{n}.json").write_text(history.to_json())
            root = await client.get_workflow_handle(root_id(first)).fetch_history()
            (OUT / "turn-root-0.json").write_text(root.to_json())
    engine.dispose()


async def main() -> None:
    schema = f"rec_{uuid.uuid4().hex[:8]}"
    admin = create_engine(test_database_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            await record(Path(tmp), f"{test_database_url()}?options=-csearch_path%3D{schema}")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))


if __name__ == "__main__":
    asyncio.run(main())
