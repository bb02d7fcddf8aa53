"""Sessions fixtures, the jobs tests' own: the orchestrator's session fixtures (dev server, PostgreSQL
schema, sandbox image, one in-process worker), and the environment for ``rlm`` subprocesses that talk
to that server and store."""

from __future__ import annotations

from tests.ops.jobs import conftest as jobs_fixtures
from tests.orchestrator import conftest as orchestrator_fixtures

# Registered here by name.
sandbox_image = orchestrator_fixtures.sandbox_image
pg_schema_url = orchestrator_fixtures.pg_schema_url
engine = orchestrator_fixtures.engine
sessions = orchestrator_fixtures.sessions
data_dir = orchestrator_fixtures.data_dir
temporal = orchestrator_fixtures.temporal
settings = orchestrator_fixtures.settings
client = orchestrator_fixtures.client
worker = orchestrator_fixtures.worker
harness = orchestrator_fixtures.harness
other_queue = orchestrator_fixtures.other_queue
cli_env = jobs_fixtures.cli_env
