"""Runs: asking for one, starting it, waiting for it, reading it back, restarting its nodes.

The route of a run's start, the same for ``rlm run``, ``rlm submit``, a schedule's fire and a restart:

1. ``request``: a ``RunRequest`` (query, context file, models, limits, deadline, budget) is checked
   once by ``checked_input``, which reads the context file, into a ``RunInput``;
2. ``start``: ``store_inputs`` stores the query and the context as blobs, ``register_run`` writes the
   run row (``run_config``: models, limits, context suffix; a schedule's name) and its root node, and
   ``root_input`` builds the root's ``NodeInput`` from what the store holds;
3. ``start.start_node`` starts the root ``RLMNode`` under ``<run>/0`` (a restart: any ended node, under
   its own id). ``submit_run`` is 1-3; a schedule stores the inputs when it is created and its
   ``launch`` activity registers each fire.

``wait`` holds ``rlm wait``'s outcome and exit codes and the patience with transient errors, and
``root_probe`` its look at Temporal for a root ended outside the engine;
``inspect`` the summary and the tree; ``restart`` the restart of an ended node.

The names below load with their module on first use (PEP 562), so that a command needing one part (a
``RunError`` for a bad option, ``rlm status``'s summary) does not import them all: ``start`` brings
Temporal's client, ``inspect`` and ``wait`` the store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.runs.inspect import (
        RunListing,
        RunSummary,
        TreeRow,
        recent_runs,
        run_summary,
        run_tree,
        tree_key,
    )
    from orchestrator.runs.request import (
        DEFAULT_TENANT,
        MAX_DEADLINE_S,
        RunError,
        RunInput,
        RunRequest,
        check_limits,
        checked,
        checked_input,
        new_run_id,
    )
    from orchestrator.runs.root_probe import RootProbe
    from orchestrator.runs.start import (
        Registered,
        RunRecord,
        Submitted,
        ensure_tenant,
        prepare_run,
        register_run,
        root_input,
        run_config,
        start_node,
        start_run,
        store_inputs,
        submit_run,
    )
    from orchestrator.runs.wait import (
        RECONNECT_S,
        ExitCode,
        LostContact,
        Patience,
        WaitOutcome,
        read_summary,
        settled,
        wait_for_run,
        wait_outcome,
    )

_HOMES = {
    "RunListing": "orchestrator.runs.inspect",
    "RunSummary": "orchestrator.runs.inspect",
    "TreeRow": "orchestrator.runs.inspect",
    "recent_runs": "orchestrator.runs.inspect",
    "run_summary": "orchestrator.runs.inspect",
    "run_tree": "orchestrator.runs.inspect",
    "tree_key": "orchestrator.runs.inspect",
    "DEFAULT_TENANT": "orchestrator.runs.request",
    "MAX_DEADLINE_S": "orchestrator.runs.request",
    "RunError": "orchestrator.runs.request",
    "RunInput": "orchestrator.runs.request",
    "RunRequest": "orchestrator.runs.request",
    "check_limits": "orchestrator.runs.request",
    "checked": "orchestrator.runs.request",
    "checked_input": "orchestrator.runs.request",
    "new_run_id": "orchestrator.runs.request",
    "RootProbe": "orchestrator.runs.root_probe",
    "Registered": "orchestrator.runs.start",
    "RunRecord": "orchestrator.runs.start",
    "Submitted": "orchestrator.runs.start",
    "ensure_tenant": "orchestrator.runs.start",
    "prepare_run": "orchestrator.runs.start",
    "register_run": "orchestrator.runs.start",
    "root_input": "orchestrator.runs.start",
    "run_config": "orchestrator.runs.start",
    "start_node": "orchestrator.runs.start",
    "start_run": "orchestrator.runs.start",
    "store_inputs": "orchestrator.runs.start",
    "submit_run": "orchestrator.runs.start",
    "RECONNECT_S": "orchestrator.runs.wait",
    "ExitCode": "orchestrator.runs.wait",
    "LostContact": "orchestrator.runs.wait",
    "Patience": "orchestrator.runs.wait",
    "WaitOutcome": "orchestrator.runs.wait",
    "read_summary": "orchestrator.runs.wait",
    "settled": "orchestrator.runs.wait",
    "wait_for_run": "orchestrator.runs.wait",
    "wait_outcome": "orchestrator.runs.wait",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_TENANT",
    "MAX_DEADLINE_S",
    "RECONNECT_S",
    "ExitCode",
    "LostContact",
    "Patience",
    "Registered",
    "RootProbe",
    "RunError",
    "RunInput",
    "RunListing",
    "RunRecord",
    "RunRequest",
    "RunSummary",
    "Submitted",
    "TreeRow",
    "WaitOutcome",
    "check_limits",
    "checked",
    "checked_input",
    "ensure_tenant",
    "new_run_id",
    "prepare_run",
    "read_summary",
    "recent_runs",
    "register_run",
    "root_input",
    "run_config",
    "run_summary",
    "run_tree",
    "settled",
    "start_node",
    "start_run",
    "store_inputs",
    "submit_run",
    "tree_key",
    "wait_for_run",
    "wait_outcome",
]
