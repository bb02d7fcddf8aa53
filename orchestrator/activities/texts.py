"""``Text`` values: short texts inline, longer ones as blobs in the store (payloads stay small)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from orchestrator.store import get_text, put_text
from orchestrator.workflows.types import INLINE_CHARS, Text, text_sha256


def pack(session: Session, text: str, inline_chars: int = INLINE_CHARS) -> Text:
    if len(text) <= inline_chars:
        return Text(inline=text)
    return Text(blob=put_text(session, text))


def unpack(session: Session, text: Text) -> str:
    if text.inline is not None:
        return text.inline
    if text.blob is None:
        return ""
    return get_text(session, text.blob)


def digest(session: Session, text: Text) -> str:
    """A stable name for the text's content (its blob hash, or the hash of the inline text)."""
    if text.blob is not None:
        return text.blob
    return text_sha256(text.inline or "")


def blob_ref(session: Session, text: Text) -> str:
    """The blob hash of the text, storing inline text as a blob first."""
    return text.blob if text.blob is not None else put_text(session, text.inline or "")
