"""Fixtures for the model-layer tests: the scripted provider registered once, sessions always closed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.llm.scripted import register_scripted_provider
from sandbox import Session
from tests.llm.driver import Sessions


@pytest.fixture(scope="session", autouse=True)
def _scripted_provider() -> None:
    register_scripted_provider()


@pytest.fixture
def sessions() -> Iterator[Sessions]:
    opened: list[Session] = []
    yield Sessions(opened)
    for session in opened:
        session.close()
