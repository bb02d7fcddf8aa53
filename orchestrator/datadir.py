"""Where the data directory is, from the environment alone.

Standard library only: the warm CLI's client (``orchestrator.warmcli.client``) finds `rlm dev`'s socket
by it before anything else is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def default_data_dir(env: Mapping[str, str]) -> Path:
    if env.get("RLM_DATA_DIR"):
        return Path(env["RLM_DATA_DIR"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "durable-rlm"
