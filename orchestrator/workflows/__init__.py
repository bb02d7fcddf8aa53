"""Deterministic workflow code: ``RLMNode`` (root and recursive sub-calls) and ``Leaf`` (one completion)."""

from orchestrator.workflows.leaf import Leaf
from orchestrator.workflows.node import RLMNode

WORKFLOWS = [RLMNode, Leaf]

__all__ = ["WORKFLOWS", "Leaf", "RLMNode"]
