"""Load ``context`` from the read-only mount: the text never travels over the control channel."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# A corpus packed by the host (orchestrator/corpus.py): {"documents": [...], "names": [...]}.
CORPUS_SUFFIX = ".docs"


class Documents(list[Any]):
    """A corpus as ``context``: a list of the documents' values, their names in ``names`` (same order).

    A plain ``list`` subclass defined here, not in the REPL, so a variable holding it pickles into a
    snapshot and loads back in a fresh sandbox (``rlm.context.Documents`` is importable there)."""

    def __init__(self, values: Iterable[Any] = (), names: Iterable[str] = ()) -> None:
        super().__init__(values)
        self.names = list(names)


def _raise(error: OSError) -> None:
    raise error


def load_context(path: str | None) -> Any:
    """A text file becomes ``str``, a ``.json`` file its value, a corpus (``.docs``) ``Documents``, and a
    directory a list of its files' texts.

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
    if source.suffix == CORPUS_SUFFIX:
        with source.open(encoding="utf-8") as handle:
            corpus = json.load(handle)
        return Documents(corpus["documents"], corpus["names"])
    return source.read_text(encoding="utf-8", errors="replace")


def describe(value: Any) -> dict[str, Any]:
    """Type and length of the loaded context, for the host (never the text itself)."""
    length = len(value) if hasattr(value, "__len__") else None
    return {"type": type(value).__name__, "length": length}
