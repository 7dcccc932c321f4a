"""The utilization-management (prior authorization) policy: frozen, versioned, carried by each run.

Clocks (CMS-0057-F, from 1 Jan 2026): a decision within 72 hours of receipt
for an expedited request and 7 calendar days for a standard one. The review
queues are calendar clocks in two chains, one per priority, whose tiers add up
to that window; every item is also capped at the request's due time
(``PendingApproval.decide_by``), so no clock runs past it. An overdue request
is escalated, and at the end of its chain expires to a human follow-up: it is
never decided by a clock.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from guardrails.policy import ApprovalRouting, QueueRule, Role, SlaRule
from tools.notice import MEDICARE_ADVANTAGE_APPEALS, AppealRules

__all__ = ["PriorAuthPolicy", "RequestPriority", "appeal_due", "decision_due", "extended_due", "review_window"]

RequestPriority = Literal["expedited", "standard"]


def _calendar(hours: int) -> SlaRule:
    return SlaRule(clock="calendar", duration=timedelta(hours=hours))


def _um_routing() -> ApprovalRouting:
    queues = {
        # Expedited: 24 + 24 + 24 = 72 hours.
        "um-nurse-review-expedited": QueueRule(role="rn", sla=_calendar(24), escalate_to="um-medical-review-expedited"),
        "um-medical-review-expedited": QueueRule(role="md", sla=_calendar(24),
                                                 escalate_to="um-medical-director-expedited"),
        "um-medical-director-expedited": QueueRule(role="md", sla=_calendar(24)),
        # Standard: 48 + 72 + 48 = 168 hours, 7 calendar days.
        "um-nurse-review": QueueRule(role="rn", sla=_calendar(48), escalate_to="um-medical-review"),
        "um-medical-review": QueueRule(role="md", sla=_calendar(72), escalate_to="um-medical-director"),
        "um-medical-director": QueueRule(role="md", sla=_calendar(48)),
    }
    return ApprovalRouting(
        queues=queues,
        entry_queue={"care_coordinator": "um-nurse-review-expedited", "rn": "um-nurse-review-expedited",
                     "md": "um-medical-review-expedited"},
        # A pend (delays) goes to an MD; a denial or partial approval needs the MD and a second reviewer.
        dual_signoff_effects=("denies", "reduces", "terminates"),
        second_signoff_role="rn",
    )


class PriorAuthPolicy(BaseModel):
    """Rules for prior-authorization triage runs. Nothing here ever denies: denials are people's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(default="prior-auth-policy/1", description="Human label of the rule set.")
    auto_approve: bool = Field(default=True, description=(
        "Approvals whose every criterion is met with cited evidence may be issued without a human, where the "
        "service's medical policy allows it too. False: every determination goes to a reviewer."))
    min_confidence: float = Field(default=0.75, ge=0.0, le=1.0)
    approval_reviewer: Role = Field(default="rn", description="Who reviews an approval that may not run alone.")
    adverse_approver: Role = Field(default="md", description="Always required to deny, reduce or pend.")
    expedited_hours: int = Field(default=72, gt=0)
    standard_days: int = Field(default=7, gt=0)
    business_day_end_hour: int = Field(default=17, ge=1, le=24)
    holidays: tuple[date, ...] = ()
    approvals: ApprovalRouting = Field(default_factory=_um_routing)
    standard_entry_queue: dict[Role, str] = Field(default_factory=lambda: {
        "care_coordinator": "um-nurse-review", "rn": "um-nurse-review", "md": "um-medical-review"})
    # Added after runs were recorded: left out of the policy's content (and its id) while at the regulation's
    # value, so the policy ids of runs started before they existed do not change.
    pend_extension_days: int = Field(default=14, ge=1, le=14, exclude_if=lambda v: v == 14, description=(
        "Calendar days a pend extends the decision time frame by (42 CFR 422.568(b)(1)(i): at most 14, when the "
        "plan needs information). The provider's documentation is due one review window before the end."))
    appeal_rules: AppealRules = Field(default=MEDICARE_ADVANTAGE_APPEALS,
                                      exclude_if=lambda v: v == MEDICARE_ADVANTAGE_APPEALS, description=(
        "Reconsideration clocks: who may ask, by when, and the appeal run's decision time frame."))

    @model_validator(mode="after")
    def _standard_queues_exist(self) -> PriorAuthPolicy:
        for role, queue in self.standard_entry_queue.items():
            if queue not in self.approvals.queues:
                raise ValueError(f"standard entry queue {queue!r} for role {role} is not defined in approvals.queues")
        return self

    def entry_queue(self, priority: RequestPriority, role: Role) -> str:
        """Where an item needing ``role`` enters, by the request's priority."""
        entries = self.approvals.entry_queue if priority == "expedited" else self.standard_entry_queue
        return entries[role]

    @property
    def policy_id(self) -> str:
        """``version#sha256[:10]`` of the whole content: what verdicts record."""
        digest = hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:10]
        return f"{self.version}#{digest}"


def decision_due(received_at: datetime, priority: RequestPriority, policy: PriorAuthPolicy) -> datetime:
    """When the determination is due: 72 hours (expedited) or 7 calendar days (standard) from receipt."""
    return received_at + review_window(priority, policy)


def review_window(priority: RequestPriority, policy: PriorAuthPolicy) -> timedelta:
    """The time frame of one review: 72 hours (expedited) or 7 calendar days (standard)."""
    return timedelta(hours=policy.expedited_hours) if priority == "expedited" else timedelta(days=policy.standard_days)


def extended_due(due: datetime, policy: PriorAuthPolicy) -> tuple[datetime, datetime]:
    """A pended request's (documentation due, extended decision due): the time frame is extended by
    ``pend_extension_days``; the provider's answer is due one standard review window before its end, so the
    plan still has a whole window to decide (the answer is reviewed on the request's own priority clock)."""
    extended = due + timedelta(days=policy.pend_extension_days)
    return extended - timedelta(days=policy.standard_days), extended


def appeal_due(filed_at: datetime, expedited: bool, policy: PriorAuthPolicy) -> datetime:
    """When a reconsideration must be decided: ``appeal_rules`` hours (expedited) or calendar days (standard)."""
    rules = policy.appeal_rules
    return filed_at + (timedelta(hours=rules.expedited_decision_hours) if expedited
                       else timedelta(days=rules.standard_decision_days))
