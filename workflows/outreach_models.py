"""The outreach run's interface: its input, its ``status`` query and its result.

Apart from the workflow module so the sandbox imports them once per worker process (passed through, see
``runtime.plugin.PASSTHROUGH_MODULES``), not once per run: pydantic builds a model's schema when its class is
defined, and the sandbox re-executes the workflow's own module for every run.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from agents.planner import ModelUsage
from guardrails.approvals import PendingApproval
from guardrails.policy import GuardrailPolicy
from guardrails.verdicts import GuardrailVerdict
from runtime.search_attributes import RunStatus
from workflows.agent_run import ActionOutcome, ActivityQueues

__all__ = ["OutreachInput", "OutreachResult", "OutreachStatus"]


class OutreachInput(BaseModel):
    """Identifiers and rules only: no member record travels in history."""

    member_id: str
    encounter_id: str
    policy: GuardrailPolicy = Field(default_factory=GuardrailPolicy)
    initiated_by: str = Field(default="system", description="Who started the run; may not approve it.")
    tool_attempts: int = Field(default=10, ge=1, description="Attempts for a retryable tool failure.")
    tool_timeout_seconds: float = Field(default=60.0, gt=0)
    planning_budget_seconds: float = Field(default=7200.0, gt=0, description=(
        "How long planning is retried (a model outage) before the offline rules plan for human review."))
    queues: ActivityQueues = Field(default_factory=ActivityQueues)


class OutreachStatus(BaseModel):
    """What the ``status`` query returns."""

    workflow_id: str
    status: RunStatus
    member_pseudonym: str | None
    lace: int | None
    planner: str | None
    planner_usage: ModelUsage | None = None
    pending_approvals: list[PendingApproval]
    actions: list[ActionOutcome]
    verdicts: list[GuardrailVerdict]


class OutreachResult(BaseModel):
    """The run's typed outcome."""

    workflow_id: str
    status: RunStatus = Field(description="completed, needs_attention, ineligible or not_discharged.")
    member_pseudonym: str | None
    eligible: bool | None
    plan_type: str | None
    lace: int | None
    risk_status: str | None
    planner: str | None
    planner_usage: ModelUsage | None = None
    stop_reasons: list[str]
    actions: list[ActionOutcome]
    verdicts: list[GuardrailVerdict]
    policy_id: str
