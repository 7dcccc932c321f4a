"""The prior-authorization run's interface: its input, its ``status`` query and its result (apart from the
workflow module so the sandbox builds them once per worker process, as ``workflows.outreach_models``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from guardrails.approvals import PendingApproval
from guardrails.prior_auth_policy import PriorAuthPolicy
from guardrails.verdicts import GuardrailVerdict
from runtime.search_attributes import RunStatus
from tools.pas_models import AppealOf, PriorAuthSubmission
from workflows.agent_run import ActionOutcome, ActivityQueues

__all__ = ["PendAnswerResult", "PriorAuthInput", "PriorAuthResult", "PriorAuthStatus"]


class PriorAuthInput(BaseModel):
    """Identifiers, codes and rules only: no clinical text travels in history."""

    submission: PriorAuthSubmission
    policy: PriorAuthPolicy = Field(default_factory=PriorAuthPolicy)
    initiated_by: str = Field(default="system", description="Who submitted the request; may not approve it.")
    tool_attempts: int = Field(default=10, ge=1)
    tool_timeout_seconds: float = Field(default=60.0, gt=0)
    queues: ActivityQueues = Field(default_factory=ActivityQueues)
    appeal: AppealOf | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "A reconsideration of an adverse determination: its own clock, decided by a physician who took no part."))


class PriorAuthStatus(BaseModel):
    """What the ``status`` query returns."""

    workflow_id: str
    status: RunStatus
    member_pseudonym: str | None
    priority: str
    decision_due: datetime
    determination: str | None = Field(description="The proposed or issued outcome: approve, deny, partial, pend.")
    planner: str | None = Field(default=None, description="The recommender that proposed it (offline rules or "
                                                          "model:<name>, with '→' when the model fell back).")
    pending_approvals: list[PendingApproval]
    actions: list[ActionOutcome]
    verdicts: list[GuardrailVerdict]
    documentation_due: datetime | None = Field(default=None, description=(
        "While the request is pended and waits for the provider's documentation: when it is due."))
    round: int = Field(default=0, description="0, or the number of pend answers the request is reviewed with.")


class PendAnswerResult(BaseModel):
    """What the ``answer_pend`` update returns: the review round the answer opened and when it is due."""

    round: int
    decision_due: datetime


class PriorAuthResult(BaseModel):
    """The run's typed outcome."""

    workflow_id: str
    status: RunStatus = Field(description="completed or needs_attention (an approval expired, a write failed).")
    member_pseudonym: str | None
    priority: str
    received_at: datetime
    decision_due: datetime
    determination: str | None = Field(description="Outcome of the ClaimResponse written, if one was.")
    claim_response: str | None = Field(description="FHIR reference of the ClaimResponse written.")
    decided_by: str | None = Field(description="Reviewers (MD first for adverse outcomes), or None if automatic.")
    decided_at: datetime | None
    overdue: bool = Field(description="Decided after the due time, or not decided at all.")
    criteria_version: str | None
    planner: str | None
    actions: list[ActionOutcome]
    verdicts: list[GuardrailVerdict]
    policy_id: str
    extended_from: datetime | None = Field(default=None, description=(
        "The decision due time before a pend extended the time frame (decision_due is then the extended one)."))
    documentation: list[str] = Field(default_factory=list, description=(
        "QuestionnaireResponse ids that answered pends, in the order they came."))
    earlier_actions: list[ActionOutcome] = Field(default_factory=list, description=(
        "Actions of the review rounds before the last (a pend and what led to it)."))
    appeal_of: str | None = Field(default=None, description=(
        "For a reconsideration: the ClaimResponse appealed (received_at is then when the appeal was filed)."))
