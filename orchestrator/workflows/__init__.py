"""Deterministic workflow code: ``RLMNode`` (root and recursive sub-calls), ``Leaf`` (one completion) and
``Launcher`` (a schedule's fire: starts one run).

The workflow classes load on first access (PEP 562), not with the package: a client that starts a run
needs only ``types``, ``common`` and ``details`` of this package, and ``rlm run`` should not pay for the
workflow definitions (their modules and decorators) on its way to the first cell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.workflows.launcher import Launcher
    from orchestrator.workflows.leaf import Leaf
    from orchestrator.workflows.node import RLMNode

    WORKFLOWS: list[type[Any]]


def __getattr__(name: str) -> Any:
    # Plain import statements, not importlib: Temporal's workflow sandbox intercepts ``__import__``.
    value: Any
    if name == "RLMNode":
        from orchestrator.workflows.node import RLMNode as value
    elif name == "Leaf":
        from orchestrator.workflows.leaf import Leaf as value
    elif name == "Launcher":
        from orchestrator.workflows.launcher import Launcher as value
    elif name == "WORKFLOWS":
        value = [__getattr__("RLMNode"), __getattr__("Leaf"), __getattr__("Launcher")]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = ["WORKFLOWS", "Launcher", "Leaf", "RLMNode"]
