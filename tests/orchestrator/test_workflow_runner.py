"""The worker's workflow runner: context questions answered outside the sandbox, code still inside it,
and the SDK's payload passes skipped where they would change nothing."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from typing import Any

import pytest
import temporalio.bridge.worker
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.bridge._visitor import PayloadVisitor
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.converter import DataConverter, PayloadCodec, SerializationContext, WithSerializationContext
from temporalio.worker.workflow_sandbox import RestrictedWorkflowAccessError, SandboxedWorkflowRunner

from orchestrator import workflow_runner as runner_module
from orchestrator.workflow_runner import ContextFreeRunner, ignores_context, workflow_runner
from orchestrator.workflows import WORKFLOWS
from tests.orchestrator.restricted_workflow import RestrictedAtImport


class PlainCodec(PayloadCodec):
    def __init__(self) -> None:
        self.decoded = 0

    async def encode(self, payloads: Any) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Any) -> list[Payload]:
        self.decoded += len(payloads)
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


def test_the_sdk_functions_the_short_cut_wraps_keep_their_parameters() -> None:
    """An SDK upgrade that changes them must fail here, not in a worker."""
    for sdk, ours in (
        (runner_module._SDK_DECODE, runner_module._decode_activation),
        (runner_module._SDK_ENCODE, runner_module._encode_completion),
    ):
        assert list(inspect.signature(sdk).parameters) == list(inspect.signature(ours).parameters)
        assert sdk.__module__ == "temporalio.bridge.worker"


async def test_the_payload_passes_run_only_where_they_can_change_a_payload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workflow_runner()
    walks = 0
    sdk_visit = PayloadVisitor.visit

    async def counted(self: PayloadVisitor, fs: Any, root: Any) -> None:
        nonlocal walks
        walks += 1
        await sdk_visit(self, fs, root)

    monkeypatch.setattr(PayloadVisitor, "visit", counted)
    activation = WorkflowActivation(run_id="run")
    activation.jobs.add().initialize_workflow.arguments.add(data=b'"x"', metadata={"encoding": b"json/plain"})
    decode = temporalio.bridge.worker.decode_activation

    await decode(activation, DataConverter.default, decode_headers=False, storage_concurrency_limit=1)
    assert walks == 0
    codec = PlainCodec()
    coded = replace(DataConverter.default, payload_codec=codec)
    await decode(activation, coded, decode_headers=False, storage_concurrency_limit=1)
    assert walks == 3
    assert codec.decoded == 1  # the argument went through the codec as before
