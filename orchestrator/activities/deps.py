"""What every activity needs, built once per worker and passed down explicitly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from orchestrator.settings import Settings


@dataclass(frozen=True, kw_only=True)
class Deps:
    settings: Settings
    sessions: sessionmaker[Session]
    client: Client
    worker_id: str
    # Labels every sandbox container this worker starts carries besides its run and node.
    sandbox_labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def context_dir(self) -> Path:
        return self.settings.data_dir / "contexts"
