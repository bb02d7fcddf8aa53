"""Load ``context``: from the read-only mount of a freshly launched runtime (the text never travels over
the control channel), or from the frames a pre-started (pooled) runtime receives after its init, which
must give the very same value.
"""

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
        return [_text(p.read_bytes(), "replace") for p in directory_files(source)]
    return file_value(source.name, source.read_bytes())


def directory_files(root: Path) -> list[Path]:
    """A directory context's files, in the order of their relative paths: its regular files, and links
    to files inside it (inside a container, a link out of the mount leads nowhere)."""
    resolved = root.resolve()
    files: list[Path] = []
    for here, _, names in os.walk(resolved, onerror=_raise):
        files.extend(Path(here) / name for name in names)
    files.sort(key=lambda p: p.relative_to(resolved).parts)
    return [p for p in files if p.is_file() and p.resolve().is_relative_to(resolved)]


def _text(data: bytes | bytearray, errors: str) -> str:
    # As a text-mode read: universal newlines turn "\r\n" and a lone "\r" into "\n".
    text = data.decode("utf-8", errors=errors)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def file_value(name: str, data: bytes | bytearray) -> Any:
    """The value of a context file named ``name`` (its suffix decides) holding ``data``."""
    suffix = Path(name).suffix
    if suffix.lower() == ".json":
        return json.loads(_text(data, "strict"))
    if suffix == CORPUS_SUFFIX:
        corpus = json.loads(_text(data, "strict"))
        return Documents(corpus["documents"], corpus["names"])
    return _text(data, "replace")


def decode_streamed(kind: str, name: str | None, parts: list[bytearray]) -> Any:
    """What ``load_context`` gives for the same file (``kind`` "file", named ``name``) or directory
    (``kind`` "dir", its files' bytes in ``load_context``'s order), from the bytes a pre-started runtime
    received. Each part is released once decoded, so a context costs its bytes plus the value, as a
    read from the mount does."""
    if kind == "file":
        if len(parts) != 1 or name is None:
            raise ValueError("a streamed file context is exactly one named part")
        return file_value(name, parts.pop())
    if kind != "dir":
        raise ValueError(f"unknown streamed context kind {kind!r}")
    texts: list[str] = []
    parts.reverse()
    while parts:
        texts.append(_text(parts.pop(), "replace"))
    return texts


def describe(value: Any) -> dict[str, Any]:
    """Type and length of the loaded context, for the host (never the text itself)."""
    length = len(value) if hasattr(value, "__len__") else None
    return {"type": type(value).__name__, "length": length}
