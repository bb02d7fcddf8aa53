"""Test helpers: start a run, wait for it, read what the store and Temporal recorded."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowHandle

from orchestrator.runs import RunRequest, RunSummary, TreeRow, run_summary, run_tree, start_run
from orchestrator.settings import Settings
from orchestrator.store import list_nodes
from orchestrator.workflows import RLMNode
from orchestrator.workflows.types import Limits, NodeResult


@dataclass
class Outcome:
    run_id: str
    result: NodeResult
    summary: RunSummary
    tree: list[TreeRow] = field(default_factory=list)


class Harness:
    def __init__(self, client: Client, sessions: sessionmaker[Session], settings: Settings) -> None:
        self.client = client
        self.sessions = sessions
        self.settings = settings

    async def start(
        self,
        query: str,
        context: Path,
        *,
        model: str,
        sub_model: str = "scripted/leaf",
        limits: Limits | None = None,
        deadline_s: float = 300.0,
        budget_usd: str | None = None,
        tenant: str = "default",
        task_queue: str | None = None,
        run_id: str | None = None,
    ) -> WorkflowHandle[RLMNode, NodeResult]:
        from decimal import Decimal

        req = RunRequest(
            query=query,
            context_path=context,
            tenant=tenant,
            budget_usd=Decimal(budget_usd) if budget_usd is not None else None,
            model=model,
            sub_model=sub_model,
            deadline_s=deadline_s,
            run_id=run_id or f"t-{uuid.uuid4().hex[:10]}",
            limits=limits or Limits(heartbeat_timeout_s=10),
        )
        return await start_run(self.client, self.sessions, req, task_queue or self.settings.task_queue)

    async def finish(self, handle: WorkflowHandle[RLMNode, NodeResult]) -> Outcome:
        result = await handle.result()
        run_id = handle.id.rsplit("/", 1)[0]
        return Outcome(run_id, result, run_summary(self.sessions, run_id), run_tree(self.sessions, run_id))

    async def run(self, query: str, context: Path, **kwargs: object) -> Outcome:
        return await self.finish(await self.start(query, context, **kwargs))  # type: ignore[arg-type]

    async def leaves_completed(self, run_id: str, count: int, timeout_s: float = 60.0) -> None:
        """Until ``count`` leaves of ``run_id`` have completed (a moment to kill something mid-fan-out)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self.sessions() as s:
                done = [n for n in list_nodes(s, run_id) if n.kind == "leaf" and n.status == "completed"]
            if len(done) >= count:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(done)} leaves of {run_id} completed in {timeout_s:g} s, not {count}"
                )
            await asyncio.sleep(0.1)


def word_context(path: Path, words: int, *, seed: int = 7, needle: str | None = None) -> tuple[Path, int]:
    """A text of random words; returns the path and how often ``ERROR`` occurs in it."""
    rng = random.Random(seed)
    vocab = ["alpha", "beta", "gamma", "delta", "ERROR", "omega", "sigma"]
    tokens = [rng.choice(vocab) for _ in range(words)]
    text = " ".join(tokens)
    if needle is not None:
        middle = len(text) // 2
        text = text[:middle] + f" {needle} " + text[middle:]
    path.write_text(text)
    return path, tokens.count("ERROR")
