"""Durations as operators type them: ``90``, ``90s``, ``10m``, ``2h``, ``30d``, ``2w``."""

from __future__ import annotations

import re

from orchestrator.errors import RlmError

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


class DurationError(RlmError):
    def __init__(self, text: str) -> None:
        super().__init__(f"{text!r} is not a duration; use e.g. 90s, 10m, 2h, 30d or 2w")
        self.text = text


def parse_duration(text: str) -> float:
    """Seconds in ``text``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if match is None:
        raise DurationError(text)
    return float(match.group(1)) * _UNITS[match.group(2)]
