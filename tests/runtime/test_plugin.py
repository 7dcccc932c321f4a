"""CareloomPlugin: one converter, codec, sandbox passthrough and failure policy for client, worker and replayer."""

from __future__ import annotations

import asyncio
import uuid
import warnings

import pytest
from pydantic import SecretStr
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.converter import DefaultFailureConverterWithEncodedAttributes
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

import runtime.errors
from agents.runtime import ToolFailure
from history.replay import replay_histories
from runtime.codec import ENCODING, PayloadEncryptionCodec, generate_key
from runtime.data_converter import DATA_CONVERTER, SharedPydanticPayloadConverter
from runtime.plugin import (
    PASSTHROUGH_MODULES,
    CareloomPlugin,
    has_careloom_plugin,
    worker_plugins,
)
from runtime.settings import Settings
from runtime.temporal_client import connect
from tests.conftest import OPEN_WINDOW
from tests.fhir_factory import make_member
from tests.runtime.plugin_workflows import (
    PROBE_ATTRIBUTE,
    FailsForGood,
    PassthroughProbe,
)
from worker import WORKFLOWS, build_worker
from workflows.outreach_client import start_outreach


def _passes_through(runner: object) -> bool:
    return isinstance(runner, SandboxedWorkflowRunner) and set(PASSTHROUGH_MODULES) <= set(
        runner.restrictions.passthrough_modules)


async def _plugin_client(env: WorkflowEnvironment, plugin: CareloomPlugin) -> Client:
    return await Client.connect(env.client.service_client.config.target_host, namespace=env.client.namespace,
                                plugins=[plugin])


async def test_client_worker_and_replayer_share_one_converter_and_codec(
    env: WorkflowEnvironment, settings: Settings, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With payload keys, the client's converter is the plugin's (shared pydantic converter, the codec,
    encoded failures); the worker built from it uses that converter and gets the plugin once, from the
    client; a run's history is ciphertext on the server and replays through history.replay's replayer."""
    keys = f"k1={generate_key()}"
    monkeypatch.setenv("CARELOOM_PAYLOAD_KEYS", keys)
    keyed = settings.model_copy(update={"payload_keys": SecretStr(keys)})
    plugin = CareloomPlugin(keyed)
    converter = plugin.converter
    assert isinstance(converter.payload_codec, PayloadEncryptionCodec)
    assert converter.failure_converter_class is DefaultFailureConverterWithEncodedAttributes
    shared = SharedPydanticPayloadConverter()  # the one per process
    assert converter.payload_converter._inner_payload_converter is shared  # type: ignore[attr-defined]

    client = await _plugin_client(env, plugin)
    assert client.data_converter is converter
    assert has_careloom_plugin(client) and [] == worker_plugins(client, keyed)

    queue = f"codec-plugin-{uuid.uuid4().hex[:8]}"  # tests/workflows/test_replay.py skips codec-* (no key)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the SDK warns when one plugin type comes from client and worker
        worker = build_worker(client, keyed, store, task_queue=queue)
    # No CareloomPlugin given to the worker itself (only the programs plugin, which registers what it runs) ...
    assert ["careloom.ProgramsPlugin"] == [p.name() for p in worker.config(active_config=True)["plugins"]]
    assert worker.client.data_converter is converter  # ... it converts with the client's converter
    active = worker.config(active_config=True)
    assert _passes_through(active["workflow_runner"])
    assert 1 == list(active["workflow_failure_exception_types"]).count(ToolFailure)  # applied once

    replayed_with = Replayer(workflows=WORKFLOWS, plugins=[CareloomPlugin(keyed)]).config(
        active_config=True)["data_converter"]
    assert isinstance(replayed_with.payload_codec, PayloadEncryptionCodec)
    assert replayed_with.failure_converter_class is DefaultFailureConverterWithEncodedAttributes
    assert replayed_with.payload_converter._inner_payload_converter is shared  # type: ignore[attr-defined]

    member = make_member(store)
    async with worker:
        handle, _ = await start_outreach(client, member_id=member.member_id, encounter_id=member.encounter_id,
                                         policy=OPEN_WINDOW, task_queue=queue, tool_attempts=1,
                                         salt=keyed.pseudonym_salt.get_secret_value())
        assert "completed" == (await handle.result()).status

    raw = await env.client.get_workflow_handle(handle.id).fetch_history()  # no codec: what the server holds
    assert {ENCODING} == {p.metadata["encoding"] for e in raw.events
                          if e.HasField("workflow_execution_started_event_attributes")
                          for p in e.workflow_execution_started_event_attributes.input.payloads}
    history = await client.get_workflow_handle(handle.id).fetch_history()
    [outcome] = await replay_histories([("server", history)])  # history.replay's replayer: Settings() from env
    assert "ok" == outcome.status, outcome.detail


async def test_connect_gives_the_client_the_plugin(settings: Settings, env: WorkflowEnvironment) -> None:
    """runtime.temporal_client.connect: the client carries the plugin and its converter."""
    client = await connect(settings, target_host=env.client.service_client.config.target_host)
    assert has_careloom_plugin(client)
    # No payload keys in the test settings, but they describe the embedded stack: its development key encrypts.
    assert isinstance(client.data_converter.payload_codec, PayloadEncryptionCodec)
    unencrypted = settings.model_copy(update={"temporal_address": env.client.service_client.config.target_host})
    assert (await connect(unencrypted)).data_converter is DATA_CONVERTER  # a named cluster without keys


def test_replay_keeps_its_runner_and_gets_the_passthrough_when_sandboxed() -> None:
    """The plugin adds the passthrough modules to a sandboxed runner and leaves the unsandboxed one alone,
    so `careloom history replay` still replays without the sandbox."""
    fast = Replayer(workflows=WORKFLOWS, workflow_runner=UnsandboxedWorkflowRunner(),
                    plugins=[CareloomPlugin()]).config(active_config=True)
    assert isinstance(fast["workflow_runner"], UnsandboxedWorkflowRunner)
    assert [ToolFailure] == list(fast["workflow_failure_exception_types"])  # replays fail like the worker
    assert fast["data_converter"] is DATA_CONVERTER
    sandboxed = Replayer(workflows=WORKFLOWS, plugins=[CareloomPlugin()]).config(active_config=True)
    assert _passes_through(sandboxed["workflow_runner"])


def test_a_worker_only_plugin_for_a_client_without_one(client: Client) -> None:
    """A client connected without the plugin (a bare Client.connect) gets a worker-level one instead."""
    bare = Client(client.service_client, namespace=client.namespace, data_converter=DATA_CONVERTER)
    assert not has_careloom_plugin(bare)
    [plugin] = worker_plugins(bare)
    assert isinstance(plugin, CareloomPlugin)


async def test_passthrough_modules_are_in_effect_in_the_sandbox(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sandboxed workflow on a worker built from the plugin's client sees the host's own careloom modules;
    on a worker with the SDK's default sandbox it sees a fresh copy (the control)."""
    token = uuid.uuid4().hex
    monkeypatch.setattr(runtime.errors, PROBE_ATTRIBUTE, token, raising=False)

    async def probe(on: Client, **options: object) -> str | None:
        queue = f"probe-{uuid.uuid4().hex[:8]}"
        async with Worker(on, task_queue=queue, workflows=[PassthroughProbe], **options):
            return await on.execute_workflow(PassthroughProbe.run, id=f"probe-{uuid.uuid4().hex[:8]}",
                                             task_queue=queue)

    assert has_careloom_plugin(client)  # the session's client (tests/conftest.py)
    assert token == await probe(client)
    bare = Client(client.service_client, namespace=client.namespace, data_converter=DATA_CONVERTER)
    assert await probe(bare, workflow_runner=SandboxedWorkflowRunner()) is None


async def _workflow_task_failed(handle, timeout: float = 20.0) -> bool:  # noqa: ANN001
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        history = await handle.fetch_history()
        if any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in history.events):
            return True
        await asyncio.sleep(0.2)
    return False


async def test_a_tool_failure_fails_the_workflow_and_a_bug_fails_only_the_task(client: Client) -> None:
    """On the dev server: a ToolFailure escaping workflow code closes the run as failed (no task retries); any
    other exception (here a RuntimeError) fails the workflow task, and the run stays open for a fixed worker."""
    queue = f"failures-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[FailsForGood]):
        failing = await client.start_workflow(FailsForGood.run, "tool-failure", id=f"fail-{uuid.uuid4().hex[:8]}",
                                              task_queue=queue)
        with pytest.raises(WorkflowFailureError) as failed:
            await failing.result()
        cause = failed.value.cause
        assert isinstance(cause, ApplicationError) and "ToolFailure" == cause.type
        assert "tools.lookup_member failed after retries" == cause.message
        events = [e.event_type for e in (await failing.fetch_history()).events]
        assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in events

        buggy = await client.start_workflow(FailsForGood.run, "bug", id=f"bug-{uuid.uuid4().hex[:8]}",
                                            task_queue=queue)
        try:
            assert await _workflow_task_failed(buggy)
            assert WorkflowExecutionStatus.RUNNING == (await buggy.describe()).status
        finally:
            await buggy.terminate("test finished")
