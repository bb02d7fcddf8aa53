"""Importing the engine never loads a ``.env`` file: litellm's import does unless told otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = "RLM_DOTENV_PROBE"
# The worker, which imports every module that uses litellm, and the two ways in from outside the
# ``orchestrator.llm`` package: compaction's window lookup and the store's price map.
MODULES = ("orchestrator.worker", "orchestrator.activities.compaction", "orchestrator.store.prices")


def _probe(cwd: Path, module: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k not in (PROBE, "LITELLM_MODE")}
    code = (
        f"import os, {module}, litellm\n"
        f"import orchestrator.store.prices as prices; prices._litellm_cost_map()\n"
        f"print(os.environ.get({PROBE!r}, '-'))"
    )
    cmd = [sys.executable, "-c", code]
    proc = subprocess.run(cmd, cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


@pytest.mark.parametrize("module", MODULES)
def test_a_dotenv_file_in_the_working_directory_is_not_loaded(tmp_path: Path, module: str) -> None:
    (tmp_path / ".env").write_text(f"{PROBE}=from-dotenv\n")
    assert _probe(tmp_path, module) == "-"


def test_a_user_who_asks_litellm_for_dev_mode_gets_the_dotenv_file(tmp_path: Path) -> None:
    # The same probe sees the file when litellm is allowed to load it: the test above can fail.
    (tmp_path / ".env").write_text(f"{PROBE}=from-dotenv\n")
    assert _probe(tmp_path, "orchestrator.llm.complete", LITELLM_MODE="DEV") == "from-dotenv"
