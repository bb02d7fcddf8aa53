"""The worker's workflow runner: context questions answered outside the sandbox, code still inside it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, PayloadCodec, SerializationContext, WithSerializationContext
from temporalio.worker.workflow_sandbox import RestrictedWorkflowAccessError, SandboxedWorkflowRunner

from orchestrator.workflow_runner import ContextFreeRunner, ignores_context, workflow_runner
from orchestrator.workflows import WORKFLOWS
from tests.orchestrator.restricted_workflow import RestrictedAtImport


class PlainCodec(PayloadCodec):
    async def encode(self, payloads: Any) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Any) -> list[Payload]:
        return list(payloads)


@dataclass(frozen=True)
class ContextCodec(PayloadCodec, WithSerializationContext):
    """A codec that keys its work on the workflow or activity it serves (as a per-tenant encryption would)."""

    context: SerializationContext | None = None

    async def encode(self, payloads: Any) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Any) -> list[Payload]:
        return list(payloads)

    def with_context(self, context: SerializationContext) -> ContextCodec:
        return ContextCodec(context)


def test_default_converter_and_context_blind_codecs_take_the_context_free_runner() -> None:
    assert ignores_context(DataConverter.default)
    assert isinstance(workflow_runner(DataConverter.default), ContextFreeRunner)
    blind = replace(DataConverter.default, payload_codec=PlainCodec())
    assert ignores_context(blind)
    assert isinstance(workflow_runner(blind), ContextFreeRunner)


def test_a_context_aware_codec_keeps_the_stock_sandboxed_runner() -> None:
    aware = replace(DataConverter.default, payload_codec=ContextCodec())
    assert not ignores_context(aware)
    runner = workflow_runner(aware)
    assert isinstance(runner, SandboxedWorkflowRunner)
    assert not isinstance(runner, ContextFreeRunner)


async def test_workflow_code_still_runs_in_the_sandbox() -> None:
    # prepare_workflow builds a throw-away instance in the sandbox, which needs a running loop.
    runner = workflow_runner()
    for defn in WORKFLOWS:
        runner.prepare_workflow(workflow._Definition.must_from_class(defn))
    with pytest.raises(RestrictedWorkflowAccessError, match=r"datetime\.datetime\.now"):
        runner.prepare_workflow(workflow._Definition.must_from_class(RestrictedAtImport))
