"""Importing the engine never loads a ``.env`` file: litellm's import does unless told otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = "RLM_DOTENV_PROBE"
# The ways litellm gets imported: a worker's modules as a command loads them, the worker module
# itself, and the two ways in from outside the ``orchestrator.llm`` package (compaction's window lookup,
# the store's price map).
IMPORTS = {
    "command": "from orchestrator.cli.common import load_worker_modules; load_worker_modules()",
    "worker": "import orchestrator.worker",
    "compaction": "import orchestrator.activities.compaction",
    "prices": "import orchestrator.store.prices as prices; prices._litellm_cost_map()",
    # A warm CLI's command runs with its caller's environment, set after the engine was imported.
    "prices, environment replaced": (
        "import orchestrator.store.prices as prices\n"
        "for name in ('LITELLM_MODE', 'LITELLM_LOCAL_MODEL_COST_MAP'): os.environ.pop(name, None)\n"
        "prices._litellm_cost_map()"
    ),
}


def _probe(cwd: Path, statement: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k not in (PROBE, "LITELLM_MODE")}
    code = f"import os\n{statement}\nimport litellm\nprint(os.environ.get({PROBE!r}, '-'))"
    cmd = [sys.executable, "-c", code]
    proc = subprocess.run(cmd, cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


@pytest.mark.parametrize("statement", list(IMPORTS.values()), ids=list(IMPORTS))
def test_a_dotenv_file_in_the_working_directory_is_not_loaded(tmp_path: Path, statement: str) -> None:
    (tmp_path / ".env").write_text(f"{PROBE}=from-dotenv\n")
    assert _probe(tmp_path, statement) == "-"


def test_a_user_who_asks_litellm_for_dev_mode_gets_the_dotenv_file(tmp_path: Path) -> None:
    # The same probe sees the file when litellm is allowed to load it: the test above can fail.
    (tmp_path / ".env").write_text(f"{PROBE}=from-dotenv\n")
    assert _probe(tmp_path, IMPORTS["worker"], LITELLM_MODE="DEV") == "from-dotenv"
