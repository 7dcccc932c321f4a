"""The care-gap closure run's interface: its input, its ``status`` query and its result (apart from the workflow
module so the sandbox builds them once per worker process, as ``workflows.outreach_models``)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from agents.planner import ModelUsage
from guardrails.approvals import PendingApproval
from guardrails.policy import GuardrailPolicy
from guardrails.verdicts import GuardrailVerdict
from runtime.search_attributes import RunStatus
from workflows.agent_run import ActionOutcome, ActivityQueues

__all__ = ["CareGapInput", "CareGapResult", "CareGapStatus"]


class CareGapInput(BaseModel):
    """Identifiers and rules only: the member, the measurement period, the measures; no record."""

    member_id: str
    period_start: date
    period_end: date = Field(description="Inclusive: the measurement period's last day; the run ends after it.")
    measure_ids: list[str] = Field(min_length=1)
    policy: GuardrailPolicy = Field(default_factory=GuardrailPolicy)
    initiated_by: str = Field(default="system", description="Who started the run; may not approve it.")
    recheck_days: int = Field(default=7, ge=1, description="Re-evaluate the gaps this often (besides `recheck`).")
    remind_every_days: int = Field(default=30, ge=1, description=(
        "A new reminder round when gaps are still open this long after the last plan."))
    tool_attempts: int = Field(default=10, ge=1)
    tool_timeout_seconds: float = Field(default=60.0, gt=0)
    queues: ActivityQueues = Field(default_factory=ActivityQueues)


class CareGapStatus(BaseModel):
    """What the ``status`` query returns."""

    workflow_id: str
    status: RunStatus
    member_pseudonym: str | None
    period_start: date
    period_end: date
    open_gaps: list[str] = Field(description="Measure ids whose gap is open at the last evaluation.")
    evaluated_at: datetime | None
    round: int
    planner: str | None
    pending_approvals: list[PendingApproval]
    actions: list[ActionOutcome]
    verdicts: list[GuardrailVerdict]


class CareGapResult(BaseModel):
    """The run's typed outcome."""

    workflow_id: str
    status: RunStatus = Field(description="completed (every gap closed, or the period ended), ineligible, "
                                          "needs_attention or withdrawn.")
    member_pseudonym: str | None
    period_start: date
    period_end: date
    opened: list[str] = Field(description="Measure ids whose gap was open at the first evaluation.")
    closed: list[str] = Field(description="Of those, the ones a later evaluation found closed.")
    still_open: list[str] = Field(description="Open at the run's end (the period ended, or it was stopped).")
    closed_after_outreach: list[str] = Field(description=(
        "Closed gaps the run had contacted the member or the PCP's office about before they closed."))
    ended_by: str = Field(description="gaps-closed, period-ended, no-open-gap, ineligible, withdrawn or "
                                      "needs-attention.")
    rechecks: int
    planner: str | None
    planner_usage: ModelUsage | None = None
    actions: list[ActionOutcome]
    earlier_actions: list[ActionOutcome] = Field(default_factory=list)
    verdicts: list[GuardrailVerdict]
    policy_id: str
