"""Foundation fixtures: one Temporal dev server for the tests that connect (TLS, logging, errors)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.devstack import DevServer, DevServerConfig

RLM = str(Path(sys.executable).parent / "rlm")


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    data = tmp_path_factory.mktemp("foundation-temporal")
    with DevServer(DevServerConfig(data_dir=data, ui=False)) as server:
        yield server


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of an ``rlm`` subprocess: none of the caller's TEMPORAL_/RLM_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "RLM_"))}
    return {**env, "RLM_DATA_DIR": str(data_dir), **extra}
