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
from tools.pas_models import PriorAuthSubmission

__all__ = ["PriorAuthRequest", "PriorAuthState"]


class PriorAuthRequest(BaseModel):
    """The run's identity and rules, fixed at start."""

    workflow_id: str
    submission: PriorAuthSubmission
    policy: PriorAuthPolicy
    initiated_by: str
    decision_due: datetime


class PriorAuthState(BaseModel):
    request: PriorAuthRequest
    facts: PriorAuthFacts | None = None
    planner: str | None = None
    planner_usage: ModelUsage | None = None
    actions: list[ActionRecord] = Field(default_factory=list)
    verdicts: list[GuardrailVerdict] = Field(default_factory=list)
    inbox: list[ReceivedDecision] = Field(default_factory=list,
                                          description="Decisions received while parked, applied on resume.")

    @property
    def finished(self) -> bool:
        return (self.facts is not None and self.planner is not None
                and all(r.status in TERMINAL for r in self.actions))

    @property
    def next_wake_up(self) -> datetime | None:
        """Determinations are never deferred: the run waits for decisions and SLA clocks only."""
        return None
