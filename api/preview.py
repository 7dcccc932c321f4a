"""A readable preview of the FHIR resource a pending action would write.

Built with the write tools' own builders, so the preview is what the tool
would store; identifiers are replaced by placeholders (minimum necessary:
the reviewer sees the action, not the member's record).
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from agents.approvals import PendingApproval
from tools.care_plan import DraftCarePlanArgs, DraftCarePlanInput, build_care_plan
from tools.outreach import SendOutreachArgs, SendOutreachInput, build_communication
from tools.tasks import CreateTaskArgs, CreateTaskInput, build_task

__all__ = ["preview_resources"]

_MEMBER, _ENCOUNTER = "(member)", "(discharge)"


def preview_resources(item: PendingApproval, now: datetime | None = None) -> list[dict[str, Any]]:
    """The resources the action would write (CarePlan with its Goals, a Task, or a Communication)."""
    now = now or datetime.now(UTC)
    key = f"preview/{item.workflow_id}/{item.approval_id}"
    common = {"member_id": _MEMBER, "encounter_id": _ENCOUNTER, "idempotency_key": key}
    args = item.arguments
    if isinstance(args, CreateTaskArgs):
        return [build_task(CreateTaskInput(**common, arguments=args, authored_at=now))]
    if isinstance(args, SendOutreachArgs):
        return [build_communication(SendOutreachInput(**common, arguments=args, contact_window_start=time(0),
                                                      contact_window_end=time.max), now)]
    if isinstance(args, DraftCarePlanArgs):
        discharged = (datetime.combine(item.context.discharged_on, time(12), tzinfo=UTC)
                      if item.context.discharged_on else now)
        return build_care_plan(DraftCarePlanInput(**common, arguments=args, authored_at=now), discharged)
    return []
