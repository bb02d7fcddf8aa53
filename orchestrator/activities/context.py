"""A node's context as a local file for the sandbox to mount, and its shape for the first prompt."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from sqlalchemy.orm import Session

from orchestrator import corpus
from orchestrator.activities import texts
from orchestrator.protocol.prompts import DOCUMENTS, ContextInfo
from orchestrator.store import iter_blob
from orchestrator.workflows.types import NodeInput


def local_context(session: Session, node: NodeInput, directory: Path) -> Path:
    """Write the context blob to ``directory`` once (atomically) and return the file's path."""
    name = texts.digest(session, node.context) + node.context_suffix
    path = directory / name
    if path.exists():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{name}.{os.getpid()}.tmp"
    with tmp.open("wb") as out:
        if node.context.blob is not None:
            for chunk in iter_blob(session, node.context.blob):
                out.write(chunk)
        else:
            out.write((node.context.inline or "").encode())
    tmp.chmod(0o644)
    tmp.replace(path)
    return path


@functools.lru_cache(maxsize=64)
def context_info(path: Path) -> ContextInfo:
    return context_shape(path.read_text(encoding="utf-8", errors="replace"), path.suffix)


def context_shape(text: str, suffix: str) -> ContextInfo:
    """The shape the model is told of a context stored with ``suffix`` (also ``rlm show``'s)."""
    if suffix == corpus.SUFFIX:
        documents = corpus.unpack(text)
        lengths = tuple(corpus.length(d.value) for d in documents)
        names = tuple(d.name for d in documents)
        return ContextInfo(kind=DOCUMENTS, total_chars=sum(lengths), chunk_lengths=lengths, names=names)
    if suffix == ".json":
        value = json.loads(text)
        if isinstance(value, list):
            lengths = tuple(corpus.length(v) for v in value)
            return ContextInfo(kind="list", total_chars=sum(lengths), chunk_lengths=lengths)
        if isinstance(value, dict):
            lengths = tuple(corpus.length(v) for v in value.values())
            return ContextInfo(kind="dict", total_chars=sum(lengths), chunk_lengths=lengths)
    return ContextInfo.of_text(len(text))
