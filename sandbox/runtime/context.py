"""Load ``context`` from the read-only mount: the text never travels over the control channel."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _raise(error: OSError) -> None:
    raise error


def load_context(path: str | None) -> Any:
    """A text file becomes ``str``, a ``.json`` file its value, a directory a list of its files' texts.

    A directory's files are taken recursively in the order of their relative paths; bytes that are not
    UTF-8 are replaced rather than failing the whole context.
    """
    if path is None:
        return None
    source = Path(path)
    if source.is_dir():
        files: list[Path] = []
        for root, _, names in os.walk(source, onerror=_raise):
            files.extend(Path(root) / name for name in names)
        files.sort(key=lambda p: p.relative_to(source).parts)
        return [p.read_text(encoding="utf-8", errors="replace") for p in files if p.is_file()]
    if source.suffix.lower() == ".json":
        with source.open(encoding="utf-8") as handle:
            return json.load(handle)
    return source.read_text(encoding="utf-8", errors="replace")


def describe(value: Any) -> dict[str, Any]:
    """Type and length of the loaded context, for the host (never the text itself)."""
    length = len(value) if hasattr(value, "__len__") else None
    return {"type": type(value).__name__, "length": length}
