"""The worker's workflow runner: Temporal's sandbox, minus two per-payload costs it does not need here.

On every workflow activation the SDK walks each payload of the activation and of its completion six
times (codec, external storage and reference passes) and, for each, asks the workflow instance which
serialization context applies. The sandboxed instance answers by ``exec``-compiling a code string
inside the sandbox with the import hooks applied: measured with py-spy in the sub-call benchmark,
that was about a quarter of the worker's event-loop CPU per ``llm_query``.

The answer only matters to a data converter, codec or external store that varies with the context.
When the worker's converter ignores contexts (``with_context`` returns it unchanged, as Temporal's
default JSON converter does) and stores nothing externally, ``ContextFreeRunner`` answers from
outside the sandbox with the workflow's own context. The workflow code still runs in the sandbox,
with its import and determinism restrictions; with any context-aware converter the stock runner is
used unchanged.

The six passes themselves run whatever the converter: with no payload codec and no external storage
(the engine's own converter) each returns every payload unchanged, and walking the protos still took
5-7% of the worker's CPU per ``llm_query``. ``skip_idle_payload_passes`` makes the SDK's
``decode_activation`` and ``encode_completion`` return at once for such a converter, and leaves them
as they are for any other. What that skips besides: the SDK's error for a payload another client
stored externally reaching a worker that has no external storage (the payload then fails to decode).
"""

from __future__ import annotations

from typing import Any

import temporalio.bridge.proto.workflow_activation
import temporalio.bridge.proto.workflow_completion
import temporalio.bridge.worker
import temporalio.workflow
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    SerializationContext,
    StorageDriverStoreContext,
    WorkflowSerializationContext,
)
from temporalio.converter._extstore import StorageOperationMetrics
from temporalio.worker import (
    WorkflowInstance,
    WorkflowInstanceDetails,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

Activation = temporalio.bridge.proto.workflow_activation.WorkflowActivation
Completion = temporalio.bridge.proto.workflow_completion.WorkflowActivationCompletion


def ignores_context(converter: DataConverter) -> bool:
    """Whether every serialization context gives this very converter and nothing is stored externally."""
    probes: list[SerializationContext] = [
        WorkflowSerializationContext(namespace="probe", workflow_id="probe"),
        ActivitySerializationContext(
            namespace="probe",
            activity_id="probe",
            workflow_id="probe",
            workflow_type="probe",
            activity_type="probe",
            activity_task_queue="probe",
            is_local=False,
        ),
    ]
    return converter.external_storage is None and all(converter.with_context(p) is converter for p in probes)


class _ContextFreeInstance(WorkflowInstance):
    def __init__(self, inner: WorkflowInstance, context: WorkflowSerializationContext) -> None:
        self._inner = inner
        self._context = context

    def activate(self, act: Activation) -> Completion:
        return self._inner.activate(act)

    def get_serialization_context(self, command_info: Any) -> SerializationContext | None:
        # The workflow's own context: the SDK then reuses the converter it already built for it.
        return self._context

    def get_external_store_context(self, command_info: Any) -> StorageDriverStoreContext:
        return StorageDriverStoreContext(target=None)

    def get_info(self) -> temporalio.workflow.Info:
        return self._inner.get_info()

    def get_thread_id(self) -> int | None:
        return self._inner.get_thread_id()


class ContextFreeRunner(WorkflowRunner):
    """The sandboxed runner, answering serialization-context questions without entering the sandbox."""

    def __init__(self, inner: WorkflowRunner) -> None:
        self._inner = inner

    def prepare_workflow(self, defn: temporalio.workflow._Definition) -> None:
        self._inner.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        context = WorkflowSerializationContext(namespace=det.info.namespace, workflow_id=det.info.workflow_id)
        return _ContextFreeInstance(self._inner.create_instance(det), context)

    def set_worker_level_failure_exception_types(self, types: Any) -> None:
        self._inner.set_worker_level_failure_exception_types(types)


_SDK_DECODE = temporalio.bridge.worker.decode_activation
_SDK_ENCODE = temporalio.bridge.worker.encode_completion


def passes_change_nothing(converter: DataConverter) -> bool:
    """Whether the SDK's payload passes would return every payload of an activation unchanged."""
    return converter.payload_codec is None and converter.external_storage is None


async def _decode_activation(
    activation: Activation,
    data_converter: DataConverter,
    decode_headers: bool,
    storage_concurrency_limit: int,
) -> StorageOperationMetrics:
    if passes_change_nothing(data_converter):
        return StorageOperationMetrics()
    return await _SDK_DECODE(activation, data_converter, decode_headers, storage_concurrency_limit)


async def _encode_completion(
    completion: Completion,
    data_converter: DataConverter,
    encode_headers: bool,
    storage_concurrency_limit: int,
) -> StorageOperationMetrics:
    if passes_change_nothing(data_converter):
        return StorageOperationMetrics()
    return await _SDK_ENCODE(completion, data_converter, encode_headers, storage_concurrency_limit)


def skip_idle_payload_passes() -> None:
    """Install the short cut for this process (the SDK looks the two functions up on every activation);
    calling it again changes nothing."""
    temporalio.bridge.worker.decode_activation = _decode_activation
    temporalio.bridge.worker.encode_completion = _encode_completion


def workflow_runner(converter: DataConverter = DataConverter.default) -> WorkflowRunner:
    skip_idle_payload_passes()
    # Our workflow modules import only deterministic code; passing them through saves re-importing
    # them into every new workflow's sandbox (the bulk of a child's first-task cost).
    restrictions = SandboxRestrictions.default.with_passthrough_modules("orchestrator", "structlog")
    sandboxed = SandboxedWorkflowRunner(restrictions=restrictions)
    return ContextFreeRunner(sandboxed) if ignores_context(converter) else sandboxed
