"""Starting post-discharge outreach runs: the business-key workflow id and the durable start (the
cross-program inbox is :mod:`workflows.inbox`)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from guardrails.policy import GuardrailPolicy
from tools.member import pseudonym, salted_digest
from workflows.agent_run import ActivityQueues
from workflows.outreach import MemberOutreachWorkflow
from workflows.outreach_models import OutreachInput

__all__ = ["outreach_workflow_id", "start_outreach"]


def outreach_workflow_id(member_id: str, encounter_id: str, salt: str) -> str:
    """The business key: a second trigger for the same episode cannot start a second run.

    Pseudonymous: workflow ids are stored and listed in plain text by Temporal (visibility, Web UI),
    so they carry the member's salted pseudonym and a salted digest of the encounter, never the ids.
    """
    return f"outreach-{pseudonym(member_id, salt)}-{salted_digest(f'{member_id}/{encounter_id}', salt)[:10]}"


# Closed like this, an episode may start again: what ALLOW_DUPLICATE_FAILED_ONLY lets Temporal do for a new id.
_RESTARTABLE = frozenset({WorkflowExecutionStatus.FAILED, WorkflowExecutionStatus.TERMINATED,
                          WorkflowExecutionStatus.CANCELED, WorkflowExecutionStatus.TIMED_OUT})


async def _legacy_run(client: Client, workflow_id: str) -> WorkflowHandle | None:
    """The run under a pre-pseudonymous id, unless there is none or it may start again (as for a new id)."""
    handle = client.get_workflow_handle_for(MemberOutreachWorkflow.run, workflow_id)
    try:
        described = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return None if described.status in _RESTARTABLE else handle


def _static_details(initiated_by: str, tool_attempts: int, planning_budget: timedelta | None,
                    queues: ActivityQueues | None) -> str:
    """The run's fixed details for the Web UI (markdown): who started it and how it runs."""
    lines = ["**program**: post-discharge outreach", f"**initiated by**: {initiated_by}",
             f"**tool attempts**: {tool_attempts}"]
    if planning_budget is not None:
        lines.append(f"**planning budget**: {planning_budget.total_seconds():g}s")
    if queues is not None and (queues.model or queues.messages):
        lines.append(f"**rate-limited queues**: model {queues.model or '-'}, messages {queues.messages or '-'}")
    return "\n".join(lines)


async def start_outreach(
    client: Client,
    *,
    member_id: str,
    encounter_id: str,
    policy: GuardrailPolicy,
    task_queue: str,
    initiated_by: str = "system",
    salt: str,
    tool_attempts: int = 10,
    planning_budget: timedelta | None = None,
    queues: ActivityQueues | None = None,
) -> tuple[WorkflowHandle[MemberOutreachWorkflow, object], bool]:
    """Start the run for this episode, or return the existing one; (handle, started_now).

    ``salt`` is the pseudonym salt (``Settings.pseudonym_salt``) the workflow id is derived with.
    An episode started before workflow ids were pseudonymous (``outreach-<member>-<encounter>``)
    is found under its old id and not started again.
    """
    legacy = await _legacy_run(client, f"outreach-{member_id}-{encounter_id}")
    if legacy is not None:
        return legacy, False
    workflow_id = outreach_workflow_id(member_id, encounter_id, salt)
    extra = {"planning_budget_seconds": planning_budget.total_seconds()} if planning_budget else {}
    try:
        handle = await client.start_workflow(
            MemberOutreachWorkflow.run,
            OutreachInput(member_id=member_id, encounter_id=encounter_id, policy=policy,
                          initiated_by=initiated_by, tool_attempts=tool_attempts,
                          queues=queues or ActivityQueues(), **extra),
            id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            # What the Web UI shows for the run: the member's pseudonym and codes, never ids, names or dates.
            static_summary=f"Post-discharge outreach for member {pseudonym(member_id, salt)}",
            static_details=_static_details(initiated_by, tool_attempts, planning_budget, queues),
        )
        return handle, True
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle_for(MemberOutreachWorkflow.run, workflow_id), False
