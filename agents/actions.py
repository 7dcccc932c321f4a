"""Proposed write actions: what the planner suggests and guardrails judge.

An action is a proposal until the guardrails (and, when they say so, a human)
let it through. Its digest binds an approval to exactly the arguments the
approver saw.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated

from pydantic import BaseModel, Field, TypeAdapter

from tools.care_plan import DraftCarePlanArgs
from tools.determination import IssueDeterminationArgs
from tools.outreach import SendOutreachArgs
from tools.tasks import CreateTaskArgs

__all__ = ["ACTION_ARGUMENTS", "ActionArguments", "ConfidenceSignal", "ProposedAction", "action_digest"]

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
