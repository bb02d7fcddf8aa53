"""Run ids and tenant names: the one rule both follow, and quoting for Temporal visibility queries.

A run id becomes part of every node's workflow id (``<run>/0.3.1``, so a ``/`` would make the tree
path ambiguous), the ``RlmRunId`` search attribute, container labels and file names; a tenant name
becomes ``RlmTenant``. Both are checked where they enter (``RunRequest``, ``rlm tenant create``), and
the command line checks every run or node id it is given (``check_target``) before looking it up.
``:`` is allowed because a schedule's runs are named ``<schedule>-<fire time>``
(``nightly-2026-11-21T02:00:00Z``).

Values that were stored before the rule existed can still be looked up: every visibility query built
from a value passes it through ``quoted``. Deterministic code only (``re``), so workflow modules may
import it.
"""

from __future__ import annotations

import re

from orchestrator.errors import RlmError

MAX_CHARS = 128
RULE = f"1-{MAX_CHARS} characters: letters, digits, '.', '_', ':' or '-', starting with a letter or digit"
TARGET_RULE = (
    "a run id, or a node id: the run id, '/', then the node's path in the tree, e.g. 0 (the root), "
    "0.3 (its third sub-call), 0.3.1"
)
_ALLOWED = re.compile(r"[A-Za-z0-9._:-]")
_VALID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:-]{{0,{MAX_CHARS - 1}}}")
# The root is 0; its i-th sub-call appends .i (from 1).
_NODE_PATH = re.compile(r"0(\.[1-9][0-9]*)*")


class BadId(RlmError):
    """A run id, a target (a run or node id) or a tenant name breaks its rule; the message says where."""

    def __init__(self, what: str, value: str, problem: str, rule: str = RULE) -> None:
        super().__init__(f"{what} {value!r} {problem}; a {what} is {rule}")
        self.what = what
        self.value = value
        self.problem = problem


def _check(what: str, value: str) -> str:
    if _VALID.fullmatch(value):
        return value
    if not value:
        raise BadId(what, value, "is empty")
    if len(value) > MAX_CHARS:
        raise BadId(what, value[:20] + "…", f"has {len(value)} characters")
    if not _ALLOWED.fullmatch(value[0]) or value[0] in "._:-":
        raise BadId(what, value, f"starts with {value[0]!r}")
    bad = next(i for i, ch in enumerate(value) if not _ALLOWED.fullmatch(ch))
    raise BadId(what, value, f"has {value[bad]!r} at position {bad + 1}")


def check_run_id(value: str) -> str:
    """``value`` when it is a valid run id, else ``BadId``."""
    return _check("run id", value)


def check_target(value: str) -> str:
    """``value`` when it is a run id or a node id (``RUN/0.3.1``), else ``BadId``."""
    run_id, slash, path = value.partition("/")
    check_run_id(run_id)
    if slash and not _NODE_PATH.fullmatch(path):
        raise BadId("target", value, f"is not a node id: {path!r} after the '/' is no tree path", TARGET_RULE)
    return value


def check_tenant(value: str) -> str:
    """``value`` when it is a valid tenant name, else ``BadId``."""
    return _check("tenant name", value)


def in_subtree(node_id: str, top: str) -> bool:
    """Whether ``node_id`` is ``top`` or below it in the tree (``RUN/0.3.1`` is under ``RUN/0.3``)."""
    return node_id == top or node_id.startswith(top + ".")


def quoted(value: str) -> str:
    """``value`` as a string literal of a Temporal visibility query (``RlmRunId = {quoted(x)}``).

    Backslash and double quote are escaped, so no value can end the literal and add a condition."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
