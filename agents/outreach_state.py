"""The outreach agent's graph state: typed, compact, identifiers not records."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from agents.planner import ModelUsage
from guardrails.actions import TERMINAL, ActionRecord
from guardrails.approvals import ReceivedDecision
from guardrails.facts import RunFacts
from guardrails.policy import GuardrailPolicy
from guardrails.verdicts import GuardrailVerdict

__all__ = ["OutreachRequest", "OutreachState"]

class OutreachRequest(BaseModel):
    """The run's identity and rules, fixed at start."""

    workflow_id: str
    member_id: str
    encounter_id: str
    policy: GuardrailPolicy
    initiated_by: str


class OutreachState(BaseModel):
    request: OutreachRequest
    facts: RunFacts | None = None
    stop: GuardrailVerdict | None = Field(default=None, description="Run-level block (e.g. ineligible).")
    planner: str | None = None
    planner_usage: ModelUsage | None = Field(default=None, description="Model requests, tokens and cost of planning.")
    actions: list[ActionRecord] = Field(default_factory=list)
    verdicts: list[GuardrailVerdict] = Field(default_factory=list)
    inbox: list[ReceivedDecision] = Field(default_factory=list,
                                          description="Decisions received while parked, applied on resume.")

    @property
    def finished(self) -> bool:
        """Stopped before planning, or every action reached a final status."""
        return self.stop is not None or (self.facts is not None and self.planner is not None
                                         and all(r.status in TERMINAL for r in self.actions))

    @property
    def next_wake_up(self) -> datetime | None:
        """When the earliest deferred action may be tried again (None: wait for decisions only)."""
        times = [r.not_before for r in self.actions if r.status == "deferred" and r.not_before is not None]
        return min(times) if times else None
