"""The prior-authorization agent's graph state: identifiers, codes and criterion findings, no records."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from agents.planner import ModelUsage
from guardrails.actions import TERMINAL, ActionRecord
from guardrails.approvals import ReceivedDecision
from guardrails.facts import PriorAuthFacts
from guardrails.prior_auth_policy import PriorAuthPolicy
from guardrails.verdicts import GuardrailVerdict
from tools.pas_models import AppealOf, PendAnswer, PriorAuthSubmission

__all__ = ["PriorAuthRequest", "PriorAuthState"]


class PriorAuthRequest(BaseModel):
    """The run's identity and rules, fixed at start."""

    workflow_id: str
    submission: PriorAuthSubmission
    policy: PriorAuthPolicy
    initiated_by: str
    decision_due: datetime
    extended_from: datetime | None = Field(default=None, description=(
        "The decision due time before a pend extended it (None: not extended)."))
    appeal: AppealOf | None = Field(default=None, description="Set when the run is a reconsideration.")


class PriorAuthState(BaseModel):
    request: PriorAuthRequest
    facts: PriorAuthFacts | None = None
    planner: str | None = None
    planner_usage: ModelUsage | None = None
    actions: list[ActionRecord] = Field(default_factory=list)
    verdicts: list[GuardrailVerdict] = Field(default_factory=list)
    inbox: list[ReceivedDecision] = Field(default_factory=list,
                                          description="Decisions received while parked, applied on resume.")
    round: int = Field(default=0, ge=0, description=(
        "0 for the first review; n after the provider answered the n-th pend (a new review of all the evidence)."))
    answers: list[PendAnswer] = Field(default_factory=list, description="Answers to pends, oldest first.")
    earlier: list[ActionRecord] = Field(default_factory=list, description="Actions of the earlier rounds.")

    def questionnaire_responses(self) -> list[str]:
        """The QuestionnaireResponses this round reads: those sent with the request, then the pend answers."""
        ids = [*self.request.submission.questionnaire_response_ids, *(a.questionnaire_response for a in self.answers)]
        return list(dict.fromkeys(ids))

    def next_round(self, answer: PendAnswer, decision_due: datetime) -> PriorAuthState:
        """A new review of all the evidence with ``answer`` added, due ``decision_due`` (the extended time frame);
        this round's actions are kept as ``earlier``."""
        request = self.request.model_copy(update={
            "decision_due": decision_due, "extended_from": self.request.extended_from or self.request.decision_due})
        return PriorAuthState(request=request, round=self.round + 1, answers=[*self.answers, answer],
                              earlier=[*self.earlier, *self.actions])

    @property
    def finished(self) -> bool:
        return (self.facts is not None and self.planner is not None
                and all(r.status in TERMINAL for r in self.actions))

    @property
    def next_wake_up(self) -> datetime | None:
        """Determinations are never deferred: the run waits for decisions and SLA clocks only."""
        return None
