"""Approval requests and decisions, bound to the exact action and the approver.

The models only: :class:`workflows.approvals.ApprovalBook` keeps a run's
pending items and applies decisions; its validator refuses with
:class:`runtime.errors.DecisionRefused` before anything reaches history.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from guardrails.actions import ActionArguments, ConfidenceSignal
from guardrails.policy import Role
from guardrails.routing import Clock, Priority

__all__ = [
    "ApprovalDecision",
    "CareGapReviewContext",
    "CriterionReview",
    "PriorAuthReviewContext",
    "DecisionResult",
    "DecisionSignature",
    "PendingApproval",
    "ReceivedDecision",
    "ReviewContext",
    "SignOff",
    "decision_key",
]

class ReviewContext(BaseModel):
    """What a reviewer needs to judge the action (minimum necessary: codes and counts, no identifiers)."""

    lace: int | None
    lace_components: str | None = Field(description="e.g. L5 A3 C1 E1")
    risk_status: str
    charlson_categories: list[str]
    plan_type: str | None
    discharged_on: date | None
    discharge_disposition: str | None
    length_of_stay_days: int | None
    tcm_contact_due: datetime | None
    age_years: int | None
    preferred_channel: str | None
    risk_model: str | None = Field(default=None, description=(
        "The learned readmission model that scored the stay: name, version, digest and probability "
        "(prioritisation only, never a coverage decision); None when LACE scored alone."))
    risk_explanation: list[str] = Field(default_factory=list, description=(
        'Its largest feature contributions in words, e.g. "3 ED visits in the 6 months before: +0.12".'))
    risk_model_note: str | None = Field(default=None, description=(
        "Why no learned model scored (LACE alone), or why its score has no explanation."))
    risk_model_ref: str | None = Field(default=None, description=(
        "``<name>/<version> sha256:<model file digest>``: what the decision ledger records."))


class CareGapReviewContext(BaseModel):
    """A care-gap closure action as its reviewer needs it: the open gaps by measure id, the period, the member's
    channel (no records, no values)."""

    kind: Literal["care_gap"] = "care_gap"
    period_start: date
    period_end: date
    open_gaps: list[str] = Field(description="Measure ids whose gap is open.")
    measures_version: str
    plan_type: str | None
    age_years: int | None
    preferred_channel: str | None


class CriterionReview(BaseModel):
    """One medical-policy criterion as the reviewer sees it: met or not, and where the notes say so."""

    criterion_id: str
    description: str
    status: Literal["met", "not_met"]
    citations: list[str] = Field(description="document#start-end: term, offsets into the decoded note.")
    contrary: list[str] = Field(default_factory=list, description="Negated mentions, the same form.")


class PriorAuthReviewContext(BaseModel):
    """A prior-authorization request as its reviewer needs it (codes, criteria, clocks; no identifiers)."""

    kind: Literal["prior_auth"] = "prior_auth"
    priority: Literal["expedited", "standard"]
    received_at: datetime
    decision_due: datetime = Field(description="CMS-0057-F: 72 h (expedited) or 7 calendar days from receipt.")
    service_codes: list[str]
    service_policy: str | None = Field(description="Medical policy applied, e.g. lumbar-spine-mri.")
    criteria_version: str
    plan_type: str | None
    eligible: bool
    criteria: list[CriterionReview]


class SignOff(BaseModel):
    approver: str
    role: Role
    at: datetime
    digest: str
    decision: ApprovalDecision | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "The signed decision of this sign-off: the worker that performs the action verifies it again."))


class PendingApproval(BaseModel):
    """An action waiting for a human, exactly as the approver will see it."""

    approval_id: str
    workflow_id: str
    action_id: str
    tool: str
    arguments: ActionArguments
    digest: str = Field(description="sha256 of the canonical arguments; a decision must name it.")
    rationale: str
    evidence: list[str]
    confidence: float
    signals: list[ConfidenceSignal]
    reasons: list[str] = Field(description="Why the guardrails asked for a human.")
    required_role: Role
    member_pseudonym: str
    requested_at: datetime
    policy_id: str
    queue: str
    priority: Priority
    sla_deadline: datetime
    remind_at: datetime
    reminded: bool = False
    escalation_level: int = 0
    dual_signoff: bool = Field(default=False, description="Two distinct approvers are required.")
    signoffs: list[SignOff] = Field(default_factory=list)
    decide_by: datetime | None = Field(default=None, description=(
        "A regulatory due time (prior authorization): no queue's deadline runs past it."))
    # Prior-auth first: its ``kind`` literal fails fast on an outreach context.
    context: PriorAuthReviewContext | CareGapReviewContext | ReviewContext = Field(union_mode="left_to_right")


    def entering(self, clock: Clock, **changes: object) -> PendingApproval:
        """This item moved into ``clock``'s queue: new role, deadline and reminder; not yet reminded."""
        deadline, remind_at = clock.deadline, clock.remind_at
        if self.decide_by is not None and deadline > self.decide_by:
            deadline, remind_at = self.decide_by, min(remind_at, self.decide_by)
        return self.model_copy(update={"queue": clock.queue, "required_role": clock.role,
                                       "sla_deadline": deadline, "remind_at": remind_at,
                                       "reminded": False, **changes})

class DecisionSignature(BaseModel):
    """Ed25519 signature of a decision by the API or CLI that authenticated the approver (guardrails/signing.py)."""

    key_id: str = Field(min_length=1, max_length=64)
    signed_at: datetime
    value: str = Field(max_length=200, description="base64 Ed25519 signature of the canonical decision.")


class ApprovalDecision(BaseModel):
    """A supervisor's decision on one pending approval (the ``decide`` update's input)."""

    approval_id: str
    digest: str = Field(description="Digest of the action the approver saw.")
    decision: Literal["approve", "reject", "edit", "reassign"]
    approver: str = Field(min_length=1, max_length=120, description="Approver's user id (authenticated).")
    role: Role
    reason: str | None = Field(default=None, max_length=500)
    arguments: ActionArguments | None = Field(default=None, description="New arguments (edit only).")
    queue: str | None = Field(default=None, description="Target queue (reassign only).")
    bulk_tool: str | None = Field(default=None, description="Set by bulk decisions: the tool every item must have.")
    signature: DecisionSignature | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "Set by the API or CLI; a run whose policy names decision keys refuses a decision without a valid one."))

    @model_validator(mode="after")
    def _complete(self) -> "ApprovalDecision":
        if self.decision == "reject" and not (self.reason and self.reason.strip()):
            raise ValueError("a rejection needs a reason")
        if self.decision == "edit" and self.arguments is None:
            raise ValueError("an edit needs the new arguments")
        if self.decision != "edit" and self.arguments is not None:
            raise ValueError("arguments are only accepted with decision=edit")
        if self.decision == "reassign" and not self.queue:
            raise ValueError("a reassignment needs the target queue")
        if self.decision != "reassign" and self.queue is not None:
            raise ValueError("queue is only accepted with decision=reassign")
        if self.bulk_tool is not None and self.decision not in ("approve", "reject"):
            raise ValueError("bulk decisions are approve or reject")
        return self


class DecisionResult(BaseModel):
    """What a decision did; an identical repeat returns the first result."""

    approval_id: str
    action_id: str
    decision: Literal["approve", "reject", "edit", "reassign"]
    outcome: Literal["approved", "rejected", "edited", "reassigned", "awaiting_second_signoff"]
    approver: str
    role: Role
    reason: str | None
    decided_at: datetime
    approved_digest: str | None = Field(description="Digest of the action that will run (edits: the new one).")
    queue: str | None = Field(default=None, description="The item's queue after the decision.")


class ReceivedDecision(BaseModel):
    """A final outcome for an approval, applied by the agent on its next step."""

    kind: Literal["decided", "expired"] = "decided"
    decision: ApprovalDecision | None = None
    approval: PendingApproval = Field(description="The item as finally decided (its arguments are the ones to run).")


def decision_key(decision: ApprovalDecision) -> str:
    """Identity of a decision for idempotent repeats: its content, whenever (and by which key) it was signed."""
    body = decision.model_dump(mode="json", exclude={"signature"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


SignOff.model_rebuild()
