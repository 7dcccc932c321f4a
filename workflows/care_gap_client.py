"""Client-side operations on care-gap closure runs: start one per member and measurement period.

The run's business key is the member and the period (salted: ids are listed in plain text), so a campaign's
re-evaluation, a retried start or a second campaign never starts a duplicate: a start for a member who has a
run for the period joins it (a closed run is not started again: its period's outcome is recorded).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from guardrails.policy import GuardrailPolicy
from tools.member import pseudonym, salted_digest
from workflows.agent_run import ActivityQueues
from workflows.care_gap import CareGapWorkflow
from workflows.care_gap_models import CareGapInput

__all__ = ["care_gap_workflow_id", "start_care_gap"]


def care_gap_workflow_id(member_id: str, period_start: date, period_end: date, salt: str) -> str:
    """The business key of a member's care-gap run for one measurement period."""
    return f"care-gap-{salted_digest(f'care-gap/{member_id}', salt)[:16]}-{period_start:%Y%m%d}-{period_end:%Y%m%d}"


async def start_care_gap(client: Client, *, member_id: str, period_start: date, period_end: date,
                         measure_ids: list[str], policy: GuardrailPolicy, task_queue: str, salt: str,
                         initiated_by: str = "system", tool_attempts: int = 10,
                         queues: ActivityQueues | None = None, recheck_days: int = 7,
                         remind_every_days: int = 30) -> tuple[WorkflowHandle[CareGapWorkflow, Any], bool]:
    """Start the member's run for the period, or join the one that exists: (handle, started_now)."""
    workflow_id = care_gap_workflow_id(member_id, period_start, period_end, salt)
    try:
        handle = await client.start_workflow(
            CareGapWorkflow.run,
            CareGapInput(member_id=member_id, period_start=period_start, period_end=period_end,
                         measure_ids=measure_ids, policy=policy, initiated_by=initiated_by,
                         tool_attempts=tool_attempts, queues=queues or ActivityQueues(),
                         recheck_days=recheck_days, remind_every_days=remind_every_days),
            id=workflow_id, task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            # What the Web UI shows for the run: the member's pseudonym, the period and measure codes.
            static_summary=(f"Care-gap closure for member {pseudonym(member_id, salt)}, "
                            f"{period_start:%Y-%m-%d}..{period_end:%Y-%m-%d}"),
            static_details="\n".join([
                "**program**: care-gap closure", f"**initiated by**: {initiated_by}",
                f"**measures**: {', '.join(measure_ids) or '-'}",
                f"**re-check every**: {recheck_days} days; **remind every**: {remind_every_days} days"]))
        return handle, True
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle_for(CareGapWorkflow.run, workflow_id), False
