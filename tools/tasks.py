"""``create_task``: a FHIR Task for a care-management work queue."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from store.records import CareRecordStore
from tools.writes import ServiceEffect, most_adverse
from tools.writes import SignedApproval, WriteResult, resource_id

__all__ = ["ADVERSE_TASK_KINDS", "CreateTaskArgs", "CreateTaskInput", "TaskKind", "create_task"]

TaskKind = Literal[
    "tcm-interactive-contact",
    "medication-reconciliation",
    "follow-up-visit",
    "care-plan-review",
    "outreach-follow-up",
    "close-care-episode",
    "reduce-service",
    "expired-approval-review",
    "run-failure-review",
    "notification-failed",
    "gap-closure-scheduling",
    "pcp-gap-notification",
]

ADVERSE_TASK_KINDS: dict[str, ServiceEffect] = {
    "close-care-episode": "terminates",
    "reduce-service": "reduces",
}
"""Task kinds that are adverse by nature, whatever effect a planner declares."""


class CreateTaskArgs(BaseModel):
    """A work item for a human care manager."""

    tool: Literal["create_task"] = "create_task"
    kind: TaskKind
    queue: str = Field(min_length=1, max_length=80, pattern=r"^[a-z0-9][a-z0-9/_-]*$",
                       description="Owner work queue, e.g. care-management/post-discharge.")
    priority: Literal["routine", "urgent", "asap", "stat"]
    description: str = Field(min_length=3, max_length=300)
    reason: str = Field(min_length=3, max_length=300)
    due: datetime = Field(description="End of the period the task must be done in (UTC).")
    service_effect: ServiceEffect = Field(
        default="none", description="Declared effect on the member's services; adverse needs an MD.")

    def effect(self) -> ServiceEffect:
        """What the task declares it does: the declared effect or its kind's (adverse by nature), the more
        adverse. What its text does is the guardrails' to add (:func:`guardrails.adverse_content.action_effect`)."""
        return most_adverse(self.service_effect, ADVERSE_TASK_KINDS.get(self.kind, "none"))


class CreateTaskInput(BaseModel):
    member_id: str
    encounter_id: str
    idempotency_key: str
    arguments: CreateTaskArgs
    approved_by: str | None = None
    approval: SignedApproval | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "The signed decisions that approved this exact action; the worker verifies them before it writes."))
    authored_at: datetime | None = Field(default=None, description=(
        "When the run decided on the action (history only). The Task's authoredOn is the moment the tool "
        "writes it, whatever this says."))
    focus: str | None = Field(default=None, description=(
        "FHIR reference the task is about; default the discharge Encounter (prior auth: the Claim)."))



def build_task(data: CreateTaskInput, *, written_at: datetime | None = None) -> dict[str, Any]:
    """The Task, authored at ``written_at`` (else the input's time, else now: a preview shows the same shape)."""
    args = data.arguments
    authored = written_at or data.authored_at or datetime.now(UTC)
    # When fulfilment is sought: from now until due. A task written after its due time (an old discharge) is
    # overdue from the start: only the end is given, since FHIR forbids a period whose start is after its end.
    sought = {"start": authored.isoformat()} if authored <= args.due else {}
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": resource_id(data.idempotency_key, "task"),
        "status": "requested",
        "intent": "order",
        "priority": args.priority,
        "code": {"coding": [{"system": "urn:careloom:task-kind", "code": args.kind}], "text": args.kind},
        "description": args.description,
        "for": {"reference": f"Patient/{data.member_id}"},
        "focus": {"reference": data.focus or f"Encounter/{data.encounter_id}"},
        "authoredOn": authored.isoformat(),
        "owner": {"identifier": {"system": "urn:careloom:queue", "value": args.queue}, "display": args.queue},
        "reasonCode": {"text": args.reason},
        "restriction": {"period": {**sought, "end": args.due.isoformat()}},
    }
    if data.approved_by:
        task["note"] = [{"text": f"Approved by {data.approved_by}."}]
    return task


def create_task(store: CareRecordStore, data: CreateTaskInput, *, now: datetime | None = None) -> WriteResult:
    """Write the Task once per idempotency key, authored now: a retry returns the first write, its time too."""
    stored, created = store.create_once([build_task(data, written_at=now or datetime.now(UTC))],
                                        data.idempotency_key)
    return WriteResult(reference=f"Task/{stored[0]['id']}", created=created)
