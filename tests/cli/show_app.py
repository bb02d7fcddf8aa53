"""The ``rlm`` app in-process (Typer's test runner), for the many short ``rlm show`` and ``rlm export``
calls of the transcript tests, with the environment ``cli_env`` gives ``rlm`` subprocesses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from typer.testing import CliRunner

from orchestrator.cli import app


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def rlm(env: dict[str, str], *args: str) -> Ran:
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)
