"""Guardrail verdicts: what the rules decided about one action, and why."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from guardrails.policy import Role

__all__ = ["Decision", "GuardrailVerdict"]

Decision = Literal["allow", "require_approval", "defer", "block"]


class GuardrailVerdict(BaseModel):
    """Recorded for every evaluation, with the exact policy that produced it."""

    action_id: str
    decision: Decision
    reasons: list[str] = Field(description="Every rule that fired, most severe first.")
    required_role: Role | None = Field(default=None, description="Set when decision is require_approval.")
    defer_until: datetime | None = Field(default=None, description="Set when decision is defer (UTC).")
    policy_id: str
    evaluated_at: datetime | None = Field(default=None, description="Workflow time of the evaluation.")
