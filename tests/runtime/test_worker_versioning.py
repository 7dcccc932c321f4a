"""Worker Versioning on the real dev server: a run parked for approval on version 1 finishes on version 1 while
new runs start on version 2 (careloom's workflows are PINNED; docs/worker-versioning.md)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
from temporalio.api.enums.v1 import EventType, VersioningBehavior
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client, WorkflowHandle
from temporalio.common import VersioningBehavior as SdkVersioningBehavior
from temporalio.service import RPCError

from guardrails.approvals import ApprovalDecision
from history.replay import replay_histories
from runtime.errors import ConfigurationError
from runtime.settings import Settings
from tests.conftest import wait_for_status
from tests.deciding import decide
from tests.fhir_factory import make_member
from tests.workflows.test_approvals import ASK_ALL_SLOW
from worker import build_worker, deployment_config_for
from workflows.outreach_client import start_outreach


def versioned(settings: Settings, deployment: str | None, build_id: str | None) -> Settings:
    return settings.model_copy(update={"worker_deployment_name": deployment, "worker_build_id": build_id})


def test_unversioned_by_default_and_pinned_when_a_deployment_is_named(settings: Settings) -> None:
    assert deployment_config_for(settings) is None
    config = deployment_config_for(versioned(settings, "careloom", "abc123"))
    assert config is not None
    assert ("careloom", "abc123") == (config.version.deployment_name, config.version.build_id)
    assert config.use_worker_versioning
    assert SdkVersioningBehavior.PINNED == config.default_versioning_behavior


@pytest.mark.parametrize(("deployment", "build_id"), [("careloom", None), ("careloom", ""), (None, "abc123")])
def test_a_half_configured_deployment_is_refused_naming_both_settings(
        settings: Settings, store, client: Client, deployment: str | None, build_id: str | None) -> None:
    half = versioned(settings, deployment, build_id)
    with pytest.raises(ConfigurationError) as refused:
        build_worker(client, half, store, task_queue="never-polled")
    assert "CARELOOM_WORKER_DEPLOYMENT_NAME" in str(refused.value)
    assert "CARELOOM_WORKER_BUILD_ID" in str(refused.value)


async def set_current(client: Client, deployment: str, build_id: str, *, timeout: float = 30.0) -> None:
    """Make ``build_id`` the deployment's current version, once the server has seen its pollers (a version
    exists only after a worker of it has polled)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await client.workflow_service.set_worker_deployment_current_version(
                SetWorkerDeploymentCurrentVersionRequest(namespace=client.namespace, deployment_name=deployment,
                                                         build_id=build_id, identity="test_worker_versioning"))
            return
        except RPCError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.3)


async def task_versions(handle: WorkflowHandle) -> list[tuple[str, int]]:
    """(build id, versioning behavior) of every WorkflowTaskCompleted event of the run."""
    history = await handle.fetch_history()
    return [(e.workflow_task_completed_event_attributes.deployment_version.build_id,
             e.workflow_task_completed_event_attributes.versioning_behavior)
            for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]


async def approve_all(client: Client, handle: WorkflowHandle) -> None:
    status = await wait_for_status(handle, lambda s: len(s.pending_approvals) == 3)
    for item in status.pending_approvals:
        await decide(client, handle.id, ApprovalDecision(approval_id=item.approval_id, digest=item.digest,
                                                         decision="approve", approver="rn.kim",
                                                         role=item.required_role))


async def test_a_run_parked_on_v1_finishes_on_v1_while_new_runs_start_on_v2(
        client: Client, settings: Settings, store) -> None:
    deployment = f"careloom-test-{uuid.uuid4().hex[:8]}"
    queue = f"test-versioned-{uuid.uuid4().hex[:8]}"
    salt = settings.pseudonym_salt.get_secret_value()
    handles: list[WorkflowHandle] = []

    async def start(member) -> WorkflowHandle:  # noqa: ANN001
        handle, started = await start_outreach(
            client, member_id=member.member_id, encounter_id=member.encounter_id, policy=ASK_ALL_SLOW,
            task_queue=queue, initiated_by="care-ops-bot", tool_attempts=1, salt=salt)
        assert started
        handles.append(handle)
        return handle

    try:
        async with contextlib.AsyncExitStack() as v1_running:
            await v1_running.enter_async_context(build_worker(client, versioned(settings, deployment, "v1"), store,
                                                              task_queue=queue))
            await set_current(client, deployment, "v1")
            parked = await start(make_member(store))
            await wait_for_status(parked, lambda s: len(s.pending_approvals) == 3)
            assert {("v1", VersioningBehavior.VERSIONING_BEHAVIOR_PINNED)} == set(await task_versions(parked))

            async with build_worker(client, versioned(settings, deployment, "v2"), store, task_queue=queue):
                await set_current(client, deployment, "v2")
                described = await client.workflow_service.describe_worker_deployment(
                    DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment))
                assert "v2" == described.worker_deployment_info.routing_config.current_deployment_version.build_id

                fresh = await start(make_member(store))
                await wait_for_status(fresh, lambda s: len(s.pending_approvals) == 3)
                info = (await fresh.describe()).raw_description.workflow_execution_info.versioning_info
                assert ("v2", VersioningBehavior.VERSIONING_BEHAVIOR_PINNED) == (
                    info.deployment_version.build_id, info.behavior)
                parked_info = (await parked.describe()).raw_description.workflow_execution_info.versioning_info
                assert "v1" == parked_info.deployment_version.build_id

                await approve_all(client, parked)
                await approve_all(client, fresh)
                parked_result, fresh_result = await asyncio.wait_for(
                    asyncio.gather(parked.result(), fresh.result()), timeout=60)
                assert "completed" == parked_result.status == fresh_result.status

                parked_tasks, fresh_tasks = await task_versions(parked), await task_versions(fresh)
                assert parked_tasks and {("v1", VersioningBehavior.VERSIONING_BEHAVIOR_PINNED)} == set(parked_tasks)
                assert fresh_tasks and {("v2", VersioningBehavior.VERSIONING_BEHAVIOR_PINNED)} == set(fresh_tasks)
                await v1_running.aclose()  # v1's last run is done: stop it while v2 keeps serving

        # The replay gate reads versioned histories as it reads unversioned ones.
        outcomes = await replay_histories([(h.id, await h.fetch_history()) for h in (parked, fresh)])
        assert ["ok", "ok"] == [o.status for o in outcomes], outcomes
    finally:
        for handle in handles:
            with contextlib.suppress(RPCError):
                await handle.terminate("test finished")
