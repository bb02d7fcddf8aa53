"""The root of durable-rlm's user-facing errors.

The command line turns an ``RlmError`` into one ``error: ...`` line and exit code 1; anything else (a
bug) keeps its traceback, so a programming error is never mistaken for bad input.
"""

from __future__ import annotations


class RlmError(Exception):
    """A user-facing error: one line saying what was wrong and how to fix it."""
