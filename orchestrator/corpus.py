"""Corpora: many documents given as one context (``--context`` a directory, a ``.jsonl`` file, or repeated).

A corpus is stored as ONE blob, ``pack(documents)``: canonical JSON ``{"documents": [...], "names": [...]}``
(sorted keys, no whitespace), so equal corpora give equal blobs and are stored once. The sandbox loads
it (suffix ``.docs``) as a list of the documents' values whose ``names`` attribute lists their names.

What becomes a document (``read_documents``):

- a directory: every regular file below it, in the order of the parts of its relative path, named by
  that path (posix); hidden files and directories (a leading dot) are skipped, symlinked directories
  are not followed, and a symlinked file that points outside the directory is refused;
- a ``.jsonl`` file: each non-blank line, its JSON value, named ``<file name>:<line number>``;
- a ``.json`` file: its value; any other file: its text; both named by the file name.

Reading stops as soon as a limit (``ContextLimits``) is passed, so a huge directory is refused without
being read. Every refusal is a ``CorpusError`` naming the file (and line or byte offset) and the fix.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import RlmError

SUFFIX = ".docs"
JSON_LINES = ".jsonl"
KINDS = "a UTF-8 text file, a .json or .jsonl file, or a directory of text files"


class CorpusError(RlmError):
    """A context or corpus cannot be read as given; the message names the file and the fix."""


@dataclass(frozen=True)
class Document:
    """One document of a corpus: its name (unique within the corpus) and its value.

    ``value`` is the text of a text file, or the JSON value of a ``.json`` file or a JSON-lines record."""

    name: str
    value: str | Any


@dataclass(frozen=True)
class ContextLimits:
    """How much one context may hold; 0 means no limit (``RLM_CONTEXT_MAX_DOCUMENTS`` / ``_BYTES``)."""

    max_documents: int = 100_000
    max_bytes: int = 1 << 30


def is_corpus(paths: Sequence[Path]) -> bool:
    """Whether ``paths`` make a corpus rather than the single text or ``.json`` file a context always was."""
    return len(paths) != 1 or paths[0].is_dir() or paths[0].suffix == JSON_LINES


def pack(documents: Iterable[Document]) -> bytes:
    """The canonical blob of a corpus: equal documents in equal order give equal bytes."""
    docs = list(documents)
    body = {"names": [d.name for d in docs], "documents": [d.value for d in docs]}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A JSON-lines record may hold a lone surrogate ("\ud800"), which UTF-8 cannot carry unescaped.
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")


def unpack(data: bytes | str) -> list[Document]:
    """The documents of a ``pack``ed corpus, in order."""
    body = json.loads(data)
    return [Document(name, value) for name, value in zip(body["names"], body["documents"], strict=True)]


def length(value: str | Any) -> int:
    """A document's length as the model is told of it: a text's characters, else its JSON's."""
    return len(value if isinstance(value, str) else json.dumps(value))


def read_documents(
    paths: Sequence[Path], limits: ContextLimits | None = None, *, label: str = "context"
) -> list[Document]:
    """The documents of ``paths`` in the order given (see the module's docstring); ``label`` starts
    every error message. Refuses a corpus without documents and two documents of the same name."""
    budget = _Budget(limits or ContextLimits(), label)
    documents: list[Document] = []
    origin: dict[str, Path] = {}
    for path in paths:
        for doc in _documents(path, budget, label):
            if doc.name in origin:
                raise CorpusError(
                    f"{label}: two documents are named {doc.name!r} (in {origin[doc.name]} and {path}); "
                    "names must be unique: rename one, or merge the directories into one"
                )
            origin[doc.name] = path
            documents.append(doc)
    if not documents:
        raise CorpusError(f"{label} {', '.join(map(str, paths))} holds no documents; give {KINDS}")
    return documents


def read_file(path: Path, limits: ContextLimits | None = None, *, hint: str, label: str = "context") -> bytes:
    """A context file's bytes, checked to be non-blank UTF-8 text within ``limits`` (``hint``: the fix)."""
    budget = _Budget(limits or ContextLimits(), label)
    if not path.is_file():
        raise CorpusError(f"{label} {path} {_missing(path)}; {hint}")
    data = budget.read(path, hint)
    text_of(path, data, hint, label)
    return data


def text_of(path: Path, data: bytes, hint: str, label: str = "context") -> str:
    """``data`` as text, refused when binary (a NUL), not UTF-8, or blank."""
    nul = data.find(b"\0")
    if nul >= 0:
        raise CorpusError(f"{label} {path} is a binary file (a NUL byte at offset {nul}); {hint}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{label} {path} is not UTF-8 text (byte offset {exc.start}); {hint} "
            "(convert other encodings with iconv -t UTF-8)"
        ) from None
    if not text.strip():
        raise CorpusError(f"{label} {path} is empty; {hint}")
    return text


class _Budget:
    """What is left of the limits; every document and byte is counted before it is kept."""

    def __init__(self, limits: ContextLimits, label: str) -> None:
        self.limits = limits
        self.label = label
        self.documents = 0
        self.bytes = 0

    def count(self) -> None:
        self.documents += 1
        top = self.limits.max_documents
        if top and self.documents > top:
            raise CorpusError(
                f"{self.label} holds more than {top:,} documents; give fewer, or raise "
                "RLM_CONTEXT_MAX_DOCUMENTS (0: no limit)"
            )

    def check(self, more: int, path: Path) -> None:
        """Refuse when ``more`` bytes (up to ``path``) on top of those read would pass the limit."""
        top = self.limits.max_bytes
        if top and self.bytes + more > top:
            raise CorpusError(
                f"{self.label} holds more than {top:,} bytes (reached at {path}); give less, or raise "
                "RLM_CONTEXT_MAX_BYTES (0: no limit)"
            )

    def read(self, path: Path, hint: str) -> bytes:
        """The file's bytes, reading no more than what is left of the byte limit (plus one, to tell)."""
        left = self.limits.max_bytes - self.bytes if self.limits.max_bytes else -1
        try:
            with path.open("rb") as handle:
                data = handle.read(left + 1 if left >= 0 else -1)
        except OSError as exc:
            raise CorpusError(f"{self.label} {path} cannot be read ({exc.strerror}); {hint}") from None
        self.check(len(data), path)
        self.bytes += len(data)
        return data


def _documents(path: Path, budget: _Budget, label: str) -> list[Document]:
    if path.is_dir():
        return _directory(path, budget, label)
    if not path.is_file():
        raise CorpusError(f"{label} {path} {_missing(path)}; give {KINDS}")
    hint = f"give {KINDS}"
    if path.suffix == JSON_LINES:
        return _json_lines(path, budget.read(path, hint), budget, label)
    budget.count()
    return [_document(path, path.name, budget.read(path, hint), label, hint)]


def _missing(path: Path) -> str:
    return "is not a readable file" + (" (it does not exist)" if not path.exists() else "")


def _document(path: Path, name: str, data: bytes, label: str, hint: str) -> Document:
    text = text_of(path, data, hint, label)
    if path.suffix != ".json":
        return Document(name, text)
    try:
        return Document(name, json.loads(text))
    except json.JSONDecodeError as exc:
        raise CorpusError(
            f"{label} {path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}; "
            "fix it, or give the file another suffix than .json to pass it as text"
        ) from None


def _json_lines(path: Path, data: bytes, budget: _Budget, label: str) -> list[Document]:
    text = text_of(path, data, f"give {KINDS}", label)
    documents: list[Document] = []
    # Split at "\n" only: a JSON string may hold U+2028 and other breaks str.splitlines() would cut at.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{label} {path} line {number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(
                f"{where} is not valid JSON: {exc.msg} at column {exc.colno}; "
                "each line of a .jsonl file is one JSON value (a string or an object)"
            ) from None
        if isinstance(value, str) and not value.strip():
            raise CorpusError(f"{where} is an empty document; drop the line or give it text")
        budget.count()
        documents.append(Document(f"{path.name}:{number}", value))
    return documents


def _directory(root: Path, budget: _Budget, label: str) -> list[Document]:
    hint = "remove it from the directory, or hide it (a leading dot in its name skips it)"
    real_root = root.resolve()
    found: list[tuple[tuple[str, ...], Path]] = []
    sized = 0

    def failed(error: OSError) -> None:
        raise CorpusError(f"{label} {error.filename} cannot be read ({error.strerror}); {hint}")

    # Files are listed, counted and sized before any is read: a directory past a limit is never read.
    for top, dirs, files in os.walk(root, onerror=failed):
        # os.walk does not descend into symlinked directories (followlinks=False).
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            path = Path(top) / name
            if path.is_symlink() and not path.resolve().is_relative_to(real_root):
                raise CorpusError(
                    f"{label} {path} is a symbolic link to {path.resolve()}, outside {root}; copy the file "
                    "into the directory, or give it as a --context of its own"
                )
            try:
                info = path.stat()
            except OSError as exc:
                raise CorpusError(f"{label} {path} cannot be read ({exc.strerror}); {hint}") from None
            if not stat.S_ISREG(info.st_mode):
                continue  # a socket, FIFO or device holds no document (and reading a FIFO would block)
            budget.count()
            sized += info.st_size
            budget.check(sized, path)
            found.append((path.relative_to(root).parts, path))
    if not found:
        raise CorpusError(
            f"{label} {root} holds no documents (hidden files are skipped); put text files in it, or give "
            "another path"
        )
    found.sort()
    # Sizes are checked against the byte limit as the files are read: they may change in between.
    return [_document(path, "/".join(parts), budget.read(path, hint), label, hint) for parts, path in found]
