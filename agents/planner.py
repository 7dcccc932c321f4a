"""The ``Planner`` interface and the planning activity.

Any planner (the offline rules now, an OpenAI-compatible model later) turns
the run's facts into typed :class:`ProposedAction` objects. The workflow calls
it through one activity, ``agents.plan_outreach``.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, Field
from temporalio import activity

from agents.actions import ProposedAction
from agents.facts import RunFacts
from guardrails.policy import GuardrailPolicy

__all__ = ["PLAN_ACTIVITY", "Planner", "PlannerActivity", "PlannerInput", "PlannerOutput"]

PLAN_ACTIVITY = "agents.plan_outreach"


class PlannerInput(BaseModel):
    workflow_id: str
    facts: RunFacts
    policy: GuardrailPolicy = Field(description="For deadlines only; planners never decide routing.")


class PlannerOutput(BaseModel):
    planner: str = Field(description="Planner name and rules version, e.g. offline-rules/1.")
    model: str | None = Field(default=None, description="Model name when a language model planned.")
    prompt_version: str | None = None
    proposals: list[ProposedAction]


class Planner(Protocol):
    name: str

    async def plan(self, data: PlannerInput) -> PlannerOutput: ...


class PlannerActivity:
    """Exposes the configured planner as the ``agents.plan_outreach`` activity."""

    def __init__(self, planner: Planner) -> None:
        self._planner = planner

    @activity.defn(name=PLAN_ACTIVITY)
    async def plan_outreach(self, data: PlannerInput) -> PlannerOutput:
        return await self._planner.plan(data)
