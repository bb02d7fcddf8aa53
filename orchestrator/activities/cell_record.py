"""``CellRecord``: what the store keeps of one executed cell (a ``cell`` step's ``data``).

Written by the ``execute`` activity when the cell finishes; read back when the cell is found recorded (a
re-run), when the model is shown its earlier cells, and when a restarted node works out where to go
on. One typed shape for all of them instead of a dict read by key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class CellRecord:
    code: str
    stdout: str
    stderr: str
    error: str | None  # the traceback, or why the cell did not finish (timeout, memory, crash)
    chars_cut: int  # characters of stdout/stderr cut to the node's output limit
    status: str  # the sandbox's CellStatus: ok, error, timeout, oom, crashed
    subcalls: int  # sub-calls the cell made
    answer: str | None  # what the cell set as the answer, if anything
    ready: bool  # the answer is final
    unpicklable: list[str]  # REPL variables the snapshot after the cell could not keep
    # The node's child counter after the cell: a node restarted with the same id skips recorded cells
    # and must not hand out their children's ids again.
    children_after: int

    def to_data(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_data(cls, data: dict[str, Any] | None) -> CellRecord:
        return cls(**(data or {}))
