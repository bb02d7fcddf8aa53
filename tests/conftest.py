"""Suite-wide settings. Areas keep their own fixtures in tests/<area>/conftest.py."""

from __future__ import annotations

import os

# litellm must never fetch its price map over the network; this has to hold before anything imports it.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

DEFAULT_TEST_DATABASE_URL = "postgresql+psycopg://rlm:rlm@127.0.0.1:5432/rlm_test"


def test_database_url() -> str:
    """The PostgreSQL URL the suite runs against (ops/test.sh exports it)."""
    return os.environ.get("RLM_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)


test_database_url.__test__ = False  # type: ignore[attr-defined]
