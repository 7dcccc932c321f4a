"""``draft_care_plan``: a CarePlan (status draft, intent proposal) with its Goals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from store.records import CareRecordStore, member_of
from tools.clinical import parse_instant
from tools.errors import ENCOUNTER_NOT_FOUND, tool_error
from tools.writes import ServiceEffect, SignedApproval, WriteResult, resource_id

__all__ = ["CarePlanActivity", "DraftCarePlanArgs", "DraftCarePlanInput", "GoalSpec", "draft_care_plan"]


class GoalSpec(BaseModel):
    description: str = Field(min_length=3, max_length=200)
    due_in_days: int = Field(ge=0, le=365, description="Days after discharge.")


class CarePlanActivity(BaseModel):
    kind: Literal["follow-up-visit", "medication-reconciliation", "education", "monitoring", "referral"]
    description: str = Field(min_length=3, max_length=200)
    due_in_days: int | None = Field(default=None, ge=0, le=365, description="Days after discharge.")


class DraftCarePlanArgs(BaseModel):
    """The proposed care plan, as a supervisor sees and may edit it."""

    tool: Literal["draft_care_plan"] = "draft_care_plan"
    title: str = Field(min_length=3, max_length=120)
    goals: list[GoalSpec] = Field(min_length=1, max_length=10)
    activities: list[CarePlanActivity] = Field(default_factory=list, max_length=20)

    def effect(self) -> ServiceEffect:
        """What the action declares it does to the member's services: nothing (its text is the guardrails')."""
        return "none"


class DraftCarePlanInput(BaseModel):
    member_id: str
    encounter_id: str
    idempotency_key: str = Field(description="workflow id + action id: a retry returns the same plan.")
    arguments: DraftCarePlanArgs
    approved_by: str | None = Field(default=None, description="Approver id when a human approved it.")
    approval: SignedApproval | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "The signed decisions that approved this exact action; the worker verifies them before it writes."))
    authored_at: datetime | None = Field(default=None, description=(
        "When the run decided on the action (history only). The CarePlan's created is the moment the tool "
        "writes it, whatever this says."))


def build_care_plan(data: DraftCarePlanInput, discharged_at: datetime, *,
                    written_at: datetime | None = None) -> list[dict[str, Any]]:
    """The CarePlan first, then its Goals (FHIR R4 JSON); created at ``written_at`` (else the input's time, else
    now). Goals and activities are timed from the discharge, which is what they are about."""
    subject = {"reference": f"Patient/{data.member_id}"}
    plan_id = resource_id(data.idempotency_key, "careplan")
    goals: list[dict[str, Any]] = []
    for index, goal in enumerate(data.arguments.goals):
        goals.append({
            "resourceType": "Goal",
            "id": resource_id(data.idempotency_key, f"goal-{index}"),
            "lifecycleStatus": "proposed",
            "description": {"text": goal.description},
            "subject": subject,
            "startDate": discharged_at.date().isoformat(),
            "target": [{"dueDate": (discharged_at + timedelta(days=goal.due_in_days)).date().isoformat()}],
        })
    activities = []
    for item in data.arguments.activities:
        detail: dict[str, Any] = {
            "status": "not-started",
            "code": {"text": item.kind},
            "description": item.description,
        }
        if item.due_in_days is not None:
            detail["scheduledPeriod"] = {
                "start": discharged_at.isoformat(),
                "end": (discharged_at + timedelta(days=item.due_in_days)).isoformat(),
            }
        activities.append({"detail": detail})
    note = "Drafted by the careloom agent"
    note += f"; approved by {data.approved_by}." if data.approved_by else "; within policy, no approval required."
    plan = {
        "resourceType": "CarePlan",
        "id": plan_id,
        "status": "draft",
        "intent": "proposal",
        "title": data.arguments.title,
        "subject": subject,
        "encounter": {"reference": f"Encounter/{data.encounter_id}"},
        "created": (written_at or data.authored_at or datetime.now(UTC)).isoformat(),
        "period": {"start": discharged_at.isoformat()},
        "goal": [{"reference": f"Goal/{g['id']}"} for g in goals],
        "activity": activities,
        "note": [{"text": note}],
    }
    return [plan, *goals]


def draft_care_plan(store: CareRecordStore, data: DraftCarePlanInput, *, now: datetime | None = None) -> WriteResult:
    """Write the plan and its Goals once per idempotency key, created now: a retry returns the first write."""
    encounter = store.get("Encounter", data.encounter_id)
    if encounter is None or member_of(encounter) != data.member_id:
        raise tool_error(ENCOUNTER_NOT_FOUND,
                         f"no Encounter {data.encounter_id!r} for member {data.member_id!r}; check both ids")
    discharged = parse_instant((encounter.get("period") or {}).get("end"))
    if discharged is None:
        raise tool_error(ENCOUNTER_NOT_FOUND, f"Encounter {data.encounter_id!r} has no discharge to plan from")
    resources = build_care_plan(data, discharged, written_at=now or datetime.now(UTC))
    stored, created = store.create_once(resources, data.idempotency_key)
    return WriteResult(
        reference=f"CarePlan/{stored[0]['id']}",
        created=created,
        related=[f"Goal/{g['id']}" for g in stored[1:]],
    )
