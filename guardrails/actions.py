"""Proposed write actions: what the planner suggests and guardrails judge.

An action is a proposal until the guardrails (and, when they say so, a human)
let it through. Its digest binds an approval to exactly the arguments the
approver saw.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from tools.care_plan import DraftCarePlanArgs
from tools.determination import IssueDeterminationArgs
from tools.outreach import SendOutreachArgs
from tools.tasks import CreateTaskArgs
from tools.writes import SignedApproval, WriteResult

from guardrails.policy import Role

__all__ = ["ACTION_ARGUMENTS", "TERMINAL", "ActionArguments", "ActionRecord", "ActionStatus", "ConfidenceSignal",
           "ProposedAction", "action_digest"]

ActionArguments = Annotated[
    DraftCarePlanArgs | CreateTaskArgs | SendOutreachArgs | IssueDeterminationArgs, Field(discriminator="tool")
]
ACTION_ARGUMENTS = TypeAdapter(ActionArguments)
"""Validates a tool-tagged arguments object (an edit from a supervisor) into its typed model."""


def action_digest(arguments: BaseModel) -> str:
    """sha256 of the canonical JSON of the tool and its arguments."""
    canonical = json.dumps(arguments.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class ConfidenceSignal(BaseModel):
    """One input to an action's confidence."""

    name: str
    value: float = Field(ge=0.0, le=1.0)
    weight: float = Field(ge=0.0, le=1.0)
    note: str = ""


class ProposedAction(BaseModel):
    """A write action the planner proposes, with why and how sure."""

    action_id: str = Field(pattern=r"^[a-z0-9-]{1,40}$", description="Stable within the run, e.g. a1-task.")
    arguments: ActionArguments
    rationale: str = Field(max_length=500)
    evidence: list[str] = Field(default_factory=list, description="Facts used, as short codes and numbers.")
    confidence: float = Field(ge=0.0, le=1.0)
    signals: list[ConfidenceSignal] = Field(default_factory=list)
    review_reasons: list[str] = Field(default_factory=list, description=(
        "Why the planner itself asks for a human (e.g. the model's answer was unusable); the guardrails "
        "route any action with a reason here to approval."))

    @property
    def tool(self) -> str:
        return self.arguments.tool

    @property
    def digest(self) -> str:
        return action_digest(self.arguments)


ActionStatus = Literal[
    "proposed", "awaiting_approval", "approved", "deferred", "ready", "executed", "rejected", "blocked", "failed",
    "expired", "withdrawn", "folded",
]
"""``folded``: final, nothing written: the write folded into another run's (the member was contacted today,
one contact a day); ``reason`` names what it folded into."""
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
