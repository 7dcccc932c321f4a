"""The care-gap closure agent's graph state: identifiers, measure ids and population flags, no records."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from agents.planner import ModelUsage
from guardrails.actions import TERMINAL, ActionRecord
from guardrails.approvals import ReceivedDecision
from guardrails.facts import CareGapFacts
from guardrails.policy import GuardrailPolicy
from guardrails.verdicts import GuardrailVerdict

__all__ = ["CareGapRequest", "CareGapState"]


class CareGapRequest(BaseModel):
    """The run's identity and rules, fixed at start."""

    workflow_id: str
    member_id: str
    period_start: date
    period_end: date = Field(description="Inclusive: the measurement period's last day.")
    measure_ids: list[str]
    policy: GuardrailPolicy
    initiated_by: str


class CareGapState(BaseModel):
    request: CareGapRequest
    facts: CareGapFacts | None = None
    planner: str | None = None
    planner_usage: ModelUsage | None = None
    actions: list[ActionRecord] = Field(default_factory=list)
    verdicts: list[GuardrailVerdict] = Field(default_factory=list)
    inbox: list[ReceivedDecision] = Field(default_factory=list,
                                          description="Decisions received while parked, applied on resume.")
    round: int = Field(default=0, ge=0, description="0 for the first plan; n for the n-th reminder round.")
    earlier: list[ActionRecord] = Field(default_factory=list, description="Actions of the earlier rounds.")

    @property
    def finished(self) -> bool:
        return (self.facts is not None and self.planner is not None
                and all(r.status in TERMINAL for r in self.actions))

    @property
    def next_wake_up(self) -> datetime | None:
        """When the earliest deferred action (outside contact hours) may be tried again."""
        times = [r.not_before for r in self.actions if r.status == "deferred" and r.not_before is not None]
        return min(times, default=None)

    def next_round(self) -> CareGapState:
        """A new reminder round: facts read again, a new plan; this round's actions kept as ``earlier``."""
        return CareGapState(request=self.request, round=self.round + 1, earlier=[*self.earlier, *self.actions])
