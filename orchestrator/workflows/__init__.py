"""Deterministic workflow code: ``RLMNode`` (root and recursive sub-calls), ``Leaf`` (one completion) and
``Launcher`` (a schedule's fire: starts one run)."""

from orchestrator.workflows.launcher import Launcher
from orchestrator.workflows.leaf import Leaf
from orchestrator.workflows.node import RLMNode

WORKFLOWS = [RLMNode, Leaf, Launcher]

__all__ = ["WORKFLOWS", "Launcher", "Leaf", "RLMNode"]
