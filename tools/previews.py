"""Readable previews of the FHIR resources a pending write action would store.

Built with the write tools' own builders, so the preview is what the tool
would store; identifiers are replaced by placeholders (minimum necessary:
the reviewer sees the action, not the member's record). Each write tool in
:mod:`tools.registry` names its preview function.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from agents.approvals import PendingApproval
from tools.care_plan import DraftCarePlanInput, build_care_plan
from tools.determination import WriteDeterminationInput, build_claim_response, build_information_request
from tools.outreach import SendOutreachInput, build_communication
from tools.tasks import CreateTaskInput, build_task

__all__ = ["care_plan_preview", "claim_response_preview", "communication_preview", "task_preview"]

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
