"""A session's stored limits: every turn's run gets them (``Limits`` fields plus the turn's deadline)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from orchestrator.vocabulary import LeafMode
from orchestrator.workflows.types import Limits

DEFAULT_DEADLINE_S = 3600.0


def stored_limits(limits: Limits, deadline: float) -> dict[str, Any]:
    return {**dataclasses.asdict(limits), "deadline_s": deadline}


def limits_of(stored: Mapping[str, Any]) -> Limits:
    known = {f.name for f in dataclasses.fields(Limits)}
    values = {k: v for k, v in stored.items() if k in known}
    if "leaf_mode" in values:
        values["leaf_mode"] = LeafMode(values["leaf_mode"])
    return Limits(**values)


def deadline_s(stored: Mapping[str, Any]) -> float:
    return float(stored.get("deadline_s", DEFAULT_DEADLINE_S))
