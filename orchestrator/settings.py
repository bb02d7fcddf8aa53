"""Settings are read from the environment once, by ``load_settings()``, and passed down explicitly."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class SettingsError(ValueError):
    """An environment variable holds a value that cannot be used; the message names it and the fix."""


def default_data_dir(env: Mapping[str, str]) -> Path:
    if env.get("RLM_DATA_DIR"):
        return Path(env["RLM_DATA_DIR"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "durable-rlm"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    temporal_address: str | None
    temporal_namespace: str
    task_queue: str
    model: str
    sub_model: str
    sandbox_backend: str
    prices_file: Path | None
    temporal_ui_url: str | None = None
    # How llm_query sub-calls run unless a run says otherwise: "workflow" (a Leaf child workflow each)
    # or "inline" (a local activity of the parent; see docs/orchestrator.md, "Leaf modes").
    leaf_mode: str = "workflow"
    # How long a cell's worker may go silent before the cell runs again elsewhere: it bounds how long a
    # killed worker's cell takes to recover (docs/operations.md, "When a worker dies").
    heartbeat_timeout_s: float = 30.0

    @property
    def embedded_temporal(self) -> bool:
        return self.temporal_address is None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    data_dir = default_data_dir(env)
    database_url = env.get("RLM_DATABASE_URL") or f"sqlite:///{data_dir / 'rlm.sqlite3'}"
    backend = env.get("RLM_SANDBOX_BACKEND", "docker")
    if backend not in ("docker", "process"):
        raise SettingsError(
            f"RLM_SANDBOX_BACKEND={backend!r} is not known; use 'docker' (default) or 'process'"
        )
    prices = env.get("RLM_PRICES_FILE")
    leaf_mode = env.get("RLM_LEAF_MODE") or "workflow"
    if leaf_mode not in ("workflow", "inline"):
        raise SettingsError(f"RLM_LEAF_MODE={leaf_mode!r} is not known; use 'workflow' (default) or 'inline'")
    heartbeat = _seconds(env, "RLM_HEARTBEAT_TIMEOUT_S", 30.0, low=1.0, high=3600.0)
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        temporal_address=env.get("TEMPORAL_ADDRESS") or None,
        temporal_namespace=env.get("TEMPORAL_NAMESPACE", "default"),
        task_queue=env.get("RLM_TASK_QUEUE", "durable-rlm"),
        model=env.get("RLM_MODEL") or "scripted/search",
        # An empty variable means "not set", as a compose file or scheduler often passes it.
        sub_model=env.get("RLM_SUB_MODEL") or env.get("RLM_MODEL") or "scripted/search",
        sandbox_backend=backend,
        prices_file=Path(prices).expanduser() if prices else None,
        temporal_ui_url=env.get("TEMPORAL_UI_URL") or None,
        leaf_mode=leaf_mode,
        heartbeat_timeout_s=heartbeat,
    )


def _seconds(env: Mapping[str, str], name: str, default: float, *, low: float, high: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # also refuses nan and inf
        raise SettingsError(f"{name}={raw!r} must be a number of seconds from {low:g} to {high:g}")
    return value
