"""Client-side operations on outreach runs, shared by the CLI (and later the API)."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from agents.approvals import ApprovalDecision, DecisionResult, PendingApproval
from guardrails.policy import GuardrailPolicy
from runtime import search_attributes as sa
from workflows.outreach import MemberOutreachWorkflow, OutreachInput, OutreachStatus, outreach_workflow_id

__all__ = ["DecisionRejected", "decide", "list_pending_approvals", "start_outreach"]


class DecisionRejected(Exception):
    """The workflow's validator refused a decision; the message says why."""


async def start_outreach(
    client: Client,
    *,
    member_id: str,
    encounter_id: str,
    policy: GuardrailPolicy,
    task_queue: str,
    initiated_by: str = "system",
    tool_attempts: int = 10,
) -> tuple[WorkflowHandle[MemberOutreachWorkflow, object], bool]:
    """Start the run for this episode, or return the existing one; (handle, started_now)."""
    workflow_id = outreach_workflow_id(member_id, encounter_id)
    try:
        handle = await client.start_workflow(
            MemberOutreachWorkflow.run,
            OutreachInput(member_id=member_id, encounter_id=encounter_id, policy=policy,
                          initiated_by=initiated_by, tool_attempts=tool_attempts),
            id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
        return handle, True
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle_for(MemberOutreachWorkflow.run, workflow_id), False


async def list_pending_approvals(client: Client, *, role: str | None = None) -> list[PendingApproval]:
    """Pending approvals across all running outreach runs, oldest request first."""
    query = f'WorkflowType = "MemberOutreachWorkflow" AND ExecutionStatus = "Running" AND {sa.PENDING_APPROVALS.name} > 0'
    if role:
        query += f' AND {sa.APPROVAL_ROLES.name} = "{role}"'
    items: list[PendingApproval] = []
    async for execution in client.list_workflows(query):
        handle = client.get_workflow_handle_for(MemberOutreachWorkflow.run, execution.id)
        status: OutreachStatus = await handle.query(MemberOutreachWorkflow.status)
        items.extend(p for p in status.pending_approvals if role is None or p.required_role == role)
    return sorted(items, key=lambda p: (p.requested_at, p.workflow_id, p.approval_id))


async def decide(client: Client, workflow_id: str, decision: ApprovalDecision) -> DecisionResult:
    """Send a decision through the ``decide`` update; a refusal raises DecisionRejected."""
    handle = client.get_workflow_handle_for(MemberOutreachWorkflow.run, workflow_id)
    try:
        return await handle.execute_update(MemberOutreachWorkflow.decide, decision)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
        raise DecisionRejected(message) from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise DecisionRejected(
                f"{workflow_id} is not running ({err.message}); it has completed or the id is wrong. "
                "See `careloom outreach status` for its outcome"
            ) from None
        raise
