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

``wait`` holds ``rlm wait``'s outcome and exit codes and the patience with transient errors;
``inspect`` the summary and the tree; ``restart`` the restart of an ended node.
"""

from orchestrator.runs.inspect import RunSummary, TreeRow, run_summary, run_tree, tree_key
from orchestrator.runs.request import (
    DEFAULT_TENANT,
    MAX_DEADLINE_S,
    RunError,
    RunInput,
    RunRequest,
    checked,
    checked_input,
    new_run_id,
)
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

__all__ = [
    "DEFAULT_TENANT",
    "MAX_DEADLINE_S",
    "RECONNECT_S",
    "ExitCode",
    "LostContact",
    "Patience",
    "Registered",
    "RunError",
    "RunInput",
    "RunRecord",
    "RunRequest",
    "RunSummary",
    "Submitted",
    "TreeRow",
    "WaitOutcome",
    "checked",
    "checked_input",
    "ensure_tenant",
    "new_run_id",
    "prepare_run",
    "read_summary",
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
