"""Readable previews of the FHIR resources a pending write action would store.

Built with the write tools' own builders, so the preview is what the tool
would store; identifiers are replaced by placeholders (minimum necessary:
the reviewer sees the action, not the member's record). One preview per
write tool, found by the arguments' ``tool`` tag (:func:`preview_resources`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time
from typing import Any

from guardrails.approvals import PendingApproval
from tools.care_plan import DraftCarePlanInput, build_care_plan
from tools.determination import WriteDeterminationInput, build_claim_response, build_information_request
from tools.outreach import SendOutreachInput, build_communication
from tools.tasks import CreateTaskInput, build_task

__all__ = ["care_plan_preview", "claim_response_preview", "communication_preview", "preview_resources", "task_preview"]

_MEMBER, _ENCOUNTER = "(member)", "(discharge)"


def _common(item: PendingApproval) -> dict[str, str]:
    return {"member_id": _MEMBER, "encounter_id": _ENCOUNTER,
            "idempotency_key": f"preview/{item.workflow_id}/{item.approval_id}"}


def task_preview(item: PendingApproval, now: datetime) -> list[dict[str, Any]]:
    return [build_task(CreateTaskInput(**_common(item), arguments=item.arguments, authored_at=now))]


def communication_preview(item: PendingApproval, now: datetime) -> list[dict[str, Any]]:
    return [build_communication(SendOutreachInput(**_common(item), arguments=item.arguments,
                                                  contact_window_start=time(0), contact_window_end=time.max), now)]


def care_plan_preview(item: PendingApproval, now: datetime) -> list[dict[str, Any]]:
    discharged = (datetime.combine(item.context.discharged_on, time(12), tzinfo=UTC)
                  if item.context.discharged_on else now)
    return build_care_plan(DraftCarePlanInput(**_common(item), arguments=item.arguments, authored_at=now), discharged)


def claim_response_preview(item: PendingApproval, now: datetime) -> list[dict[str, Any]]:
    """The ClaimResponse (and a pend's information request) against a placeholder of the request."""
    args = item.arguments
    claim = {"resourceType": "Claim", "id": "(request)", "type": {"text": "(request type)"},
             "provider": {"display": "(requesting provider)"},
             "item": [{"sequence": line.sequence, "quantity": {"value": line.approved_quantity or 1}}
                      for line in args.items]}
    data = WriteDeterminationInput(
        claim_id="(request)", member_id=_MEMBER, coverage_id="(coverage)",
        idempotency_key=f"preview/{item.workflow_id}/{item.approval_id}", approved_by="(reviewer)",
        arguments=args, decided_at=now, criteria_version=getattr(item.context, "criteria_version", "(criteria)"))
    response = build_claim_response(data, claim, {"payor": [{"display": "(health plan)"}]})
    return [response, build_information_request(data, claim)] if args.outcome == "pend" else [response]


_PREVIEWS: dict[str, Callable[[PendingApproval, datetime], list[dict[str, Any]]]] = {
    "create_task": task_preview, "send_outreach": communication_preview, "draft_care_plan": care_plan_preview,
    "issue_determination": claim_response_preview,
}


def preview_resources(item: PendingApproval, now: datetime | None = None) -> list[dict[str, Any]]:
    """The resources the action would write (CarePlan with its Goals, a Task, a Communication, ...); none for
    a tool without a preview."""
    preview = _PREVIEWS.get(item.arguments.tool)
    return [] if preview is None else preview(item, now or datetime.now(UTC))
