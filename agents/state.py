"""The outreach agent's graph state: typed, compact, identifiers not records."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from agents.actions import ProposedAction
from agents.approvals import ReceivedDecision
from agents.facts import RunFacts
from agents.planner import ModelUsage
from guardrails.policy import GuardrailPolicy, Role
from guardrails.verdicts import GuardrailVerdict
from tools.writes import SignedApproval, WriteResult

__all__ = ["FINAL_STATUSES", "ActionRecord", "ActionStatus", "OutreachRequest", "OutreachState", "RunStatus",
           "TERMINAL"]

ActionStatus = Literal[
    "proposed", "awaiting_approval", "approved", "deferred", "ready", "executed", "rejected", "blocked", "failed",
    "expired", "withdrawn", "folded",
]
"""``folded``: final, nothing written: the write folded into another run's (the member was contacted today,
one contact a day); ``reason`` names what it folded into."""
RunStatus = Literal[
    "starting", "gathering", "planning", "executing", "awaiting_approval", "deferred", "completed",
    "needs_attention", "ineligible", "not_discharged", "withdrawn",
]
"""A run's status word (the CareloomStatus search attribute); the last five are final (a cancelled run, and one
withdrawn by its source, ends ``withdrawn``; one that could not go on ends ``needs_attention`` with a human
follow-up Task)."""
FINAL_STATUSES: frozenset[str] = frozenset({"completed", "needs_attention", "ineligible", "not_discharged",
                                            "withdrawn"})
TERMINAL: frozenset[str] = frozenset({"executed", "rejected", "blocked", "failed", "expired", "withdrawn",
                                      "folded"})


class ActionRecord(BaseModel):
    """One proposed action and everything that happened to it."""

    action: ProposedAction = Field(description="The current action (after an edit, the edited one).")
    proposed_digest: str = Field(description="Digest of the planner's original arguments.")
    status: ActionStatus = "proposed"
    not_before: datetime | None = Field(default=None, description="Deferred until (UTC).")
    approval_requests: int = 0
    approved_by: str | None = None
    approver_role: Role | None = None
    approval: SignedApproval | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "The signed decisions that approved the action, for the worker that performs it to verify."))
    edited: bool = False
    reason: str | None = Field(default=None, description="Why rejected, blocked, failed or folded.")
    result: WriteResult | None = None


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
