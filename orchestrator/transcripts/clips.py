"""Texts as a transcript shows them: cut to a ``Cut`` policy's limit (``Clip``), with their full length.

A CLIP in a transcript's JSON is ``{"text": ..., "chars": N}``: ``text`` is the text as shown (cut to the
``Cut`` policy's limit) and ``chars`` the full length, so ``chars - len(text)`` characters were cut (a
sub-call's prompt and answer are cut to the shorter ``preview`` limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_CUT_CHARS = 2_000
# A sub-call's prompt and answer are previews: a cell may make a thousand of them.
DEFAULT_PREVIEW_CHARS = 200


@dataclass(frozen=True)
class Cut:
    """How long a shown text may be: ``limit`` characters (``preview`` for a sub-call's prompt and
    answer), or whole when None (``--full``)."""

    limit: int | None = DEFAULT_CUT_CHARS
    preview: int | None = DEFAULT_PREVIEW_CHARS

    def clip(self, text: str) -> Clip:
        return _cut(text, self.limit)

    def maybe(self, text: str | None) -> Clip | None:
        return None if text is None else _cut(text, self.limit)

    def previewed(self, text: str | None) -> Clip | None:
        return None if text is None else _cut(text, self.preview)


def _cut(text: str, limit: int | None) -> Clip:
    if limit is None or len(text) <= limit:
        return Clip(text=text, chars=len(text))
    return Clip(text=text[:limit], chars=len(text))


FULL = Cut(limit=None, preview=None)


@dataclass(frozen=True)
class Clip:
    """A text as shown (``text``, perhaps cut) and its full length (``chars``)."""

    text: str
    chars: int

    @property
    def more(self) -> int:
        """Characters cut off the end."""
        return self.chars - len(self.text)

    def shown(self) -> str:
        """The text with a count of what was cut: ``… [12,345 more chars]``."""
        return self.text if self.more <= 0 else f"{self.text}… [{self.more:,} more chars]"

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "chars": self.chars}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Clip:
        return cls(text=data["text"], chars=data["chars"])


def read_clip(data: dict[str, Any] | None) -> Clip | None:
    return None if data is None else Clip.from_json(data)


def clip_json(clip: Clip | None) -> dict[str, Any] | None:
    return None if clip is None else clip.to_json()
