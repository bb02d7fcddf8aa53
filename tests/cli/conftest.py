"""CLI fixtures: the jobs fixtures (session dev server, PostgreSQL schema, sandbox image, one worker, and
the environment for ``rlm`` subprocesses that talk to them)."""

from __future__ import annotations

from tests.ops.jobs import conftest as jobs_fixtures

sandbox_image = jobs_fixtures.sandbox_image
pg_schema_url = jobs_fixtures.pg_schema_url
engine = jobs_fixtures.engine
sessions = jobs_fixtures.sessions
data_dir = jobs_fixtures.data_dir
temporal = jobs_fixtures.temporal
settings = jobs_fixtures.settings
client = jobs_fixtures.client
worker = jobs_fixtures.worker
harness = jobs_fixtures.harness
cli_env = jobs_fixtures.cli_env
words = jobs_fixtures.words
