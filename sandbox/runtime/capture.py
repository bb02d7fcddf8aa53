"""Bounded capture of a cell's ``sys.stdout`` / ``sys.stderr``: the head and the tail are kept.

Memory stays O(limit) however much the cell prints, so printing 50 MB neither grows the runtime nor sends
more than ``limit`` characters to the host.
"""

from __future__ import annotations

import io


def cut_marker(cut: int) -> str:
    return f"\n[… {cut} characters cut …]\n"


class CappedStream(io.TextIOBase):
    """A text stream that keeps the first ``limit - limit // 2`` and the last ``limit // 2`` characters."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        if limit < 0:
            raise ValueError(f"output limit must be >= 0, got {limit}")
        self._head_limit = limit - limit // 2
        self._tail_limit = limit // 2
        self._head: list[str] = []
        self._head_len = 0
        self._tail: list[str] = []
        self._tail_len = 0
        self._total = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        written = len(text)
        self._total += written
        room = self._head_limit - self._head_len
        if room > 0:
            self._head.append(text[:room])
            self._head_len += min(room, len(text))
            text = text[room:]
        if text and self._tail_limit:
            self._tail.append(text[-self._tail_limit :])
            self._tail_len += min(len(text), self._tail_limit)
            # Compact only when twice the limit is buffered, so that compaction stays amortised O(1).
            if self._tail_len > 2 * self._tail_limit:
                joined = "".join(self._tail)[-self._tail_limit :]
                self._tail = [joined]
                self._tail_len = len(joined)
        return written

    def result(self) -> tuple[str, int]:
        """The kept text (with a marker where characters were cut) and how many characters were cut."""
        head = "".join(self._head)
        tail = "".join(self._tail)[-self._tail_limit :] if self._tail_limit else ""
        cut = self._total - len(head) - len(tail)
        if cut == 0:
            return head + tail, 0
        return head + cut_marker(cut) + tail, cut
