"""The one typed, versioned guardrail policy.

Thresholds and rules live here; every verdict records :attr:`GuardrailPolicy.policy_id`
(the version label plus a hash of the content), so an audit can tell exactly
which rules routed a case, even when a threshold was overridden by settings.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tools.writes import ServiceEffect

__all__ = ["ApprovalRouting", "DecisionKey", "DecisionSignatures", "GuardrailPolicy", "QueueRule", "ROLE_RANK", "Role", "SlaRule",
           "max_role"]

Role = Literal["care_coordinator", "rn", "md"]
"""Approver roles, least to most authority."""

ROLE_RANK: dict[str, int] = {"care_coordinator": 1, "rn": 2, "md": 3}


def max_role(roles: list[Role]) -> Role | None:
    """The most senior of ``roles`` (None for none)."""
    return max(roles, key=lambda r: ROLE_RANK[r]) if roles else None



class SlaRule(BaseModel):
    """How long a queue has to decide, and when to remind."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    clock: Literal["business", "calendar"] = Field(
        default="business", description="business: only business hours count; calendar: every hour counts.")
    duration: timedelta = Field(description="Time to decide, e.g. PT8H.", gt=timedelta(0))
    remind_at_fraction: float = Field(default=0.75, gt=0.0, lt=1.0,
                                      description="A reminder is recorded when this share of the time is gone.")


class QueueRule(BaseModel):
    """One approval queue: who may decide there, its clock and where it escalates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    sla: SlaRule
    escalate_to: str | None = Field(default=None, description="Next tier; None ends the chain.")


def _default_queues() -> dict[str, QueueRule]:
    hours = lambda n: SlaRule(duration=timedelta(hours=n))  # noqa: E731
    return {
        "care-coordination": QueueRule(role="care_coordinator", sla=hours(8), escalate_to="care-coordination-lead"),
        "care-coordination-lead": QueueRule(role="rn", sla=hours(4)),
        "clinical-review": QueueRule(role="rn", sla=hours(8), escalate_to="clinical-review-lead"),
        "clinical-review-lead": QueueRule(role="rn", sla=hours(4), escalate_to="medical-review"),
        # Adverse actions: prior-authorization style clocks (CMS-0057-F expedited 72 h).
        "medical-review": QueueRule(role="md", sla=SlaRule(clock="calendar", duration=timedelta(hours=72)),
                                    escalate_to="medical-director"),
        "medical-director": QueueRule(role="md", sla=SlaRule(clock="calendar", duration=timedelta(hours=24))),
    }


class DecisionKey(BaseModel):
    """A public key whose signatures a run accepts on decisions (``guardrails/signing.py``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str = Field(min_length=1, max_length=64)
    public_key: str = Field(description="Ed25519 public key, base64 of its 32 raw bytes.")
    not_after: datetime | None = Field(default=None, description="Retired: signatures dated at or after this "
                                                                 "are refused.")

    @field_validator("not_after")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("not_after needs a UTC offset, e.g. 2026-12-31T00:00:00Z")
        return value


class DecisionSignatures(BaseModel):
    """Who may sign decisions on a run: set, every decision must carry a valid, fresh signature."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keys: tuple[DecisionKey, ...] = Field(min_length=1, description="Several at once during a rotation.")

    @field_validator("keys")
    @classmethod
    def _distinct(cls, value: tuple[DecisionKey, ...]) -> tuple[DecisionKey, ...]:
        ids = [k.key_id for k in value]
        if len(set(ids)) != len(ids):
            raise ValueError(f"key ids must be distinct: {ids}")
        return value
    max_age_seconds: int = Field(default=300, ge=10, le=3600, description=(
        "A signature older than this (by workflow time) is refused: a delayed or replayed decision."))


class ApprovalRouting(BaseModel):
    """Queues, SLA clocks, escalation chains and dual sign-off. Nothing here ever approves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queues: dict[str, QueueRule] = Field(default_factory=_default_queues)
    entry_queue: dict[Role, str] = Field(default_factory=lambda: {
        "care_coordinator": "care-coordination", "rn": "clinical-review", "md": "medical-review"})
    dual_signoff_effects: tuple[ServiceEffect, ...] = Field(
        default=("denies", "delays", "reduces", "terminates"),
        description="Effects that need two distinct approvers: the required role, then a second reviewer.")
    second_signoff_role: Role = "rn"
    business_time_zone: str = Field(default="America/New_York", description="Zone of the reviewers' hours.")
    business_day_start_hour: int = Field(default=8, ge=0, le=23)
    # Default 0 here (settings default to 5 %): a run recorded before this field existed reads its policy back
    # with no sampling, so its history replays exactly as it ran.
    quality_sample_rate: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="Share of automatically executed actions (allowed by the guardrails, no human approval) "
                    "sent to the retrospective quality-review queue; never blocks or delays the action. "
                    "Selection is a deterministic hash of workflow id and action id.")
    quality_review_queue: str = Field(default="quality-review", min_length=1,
                                      description="Where sampled actions wait for a retrospective review.")
    # Left out of the dump when unset, so policies (and policy ids) from before signing read back unchanged.
    decision_signatures: DecisionSignatures | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="The keys whose signed decisions the run accepts; None: unsigned decisions (runs started "
                    "before signing was configured).")

    @model_validator(mode="after")
    def _chains_are_sound(self) -> "ApprovalRouting":
        for role, queue in self.entry_queue.items():
            if queue not in self.queues:
                raise ValueError(f"entry queue {queue!r} for role {role} is not defined in queues")
        for name, rule in self.queues.items():
            seen = {name}
            current = rule
            while current.escalate_to is not None:
                nxt = current.escalate_to
                if nxt not in self.queues:
                    raise ValueError(f"queue {name!r} escalates to undefined queue {nxt!r}")
                if nxt in seen:
                    raise ValueError(f"escalation chain from {name!r} loops at {nxt!r}")
                seen.add(nxt)
                current = self.queues[nxt]
        return self


class GuardrailPolicy(BaseModel):
    """Rules for outreach runs. Frozen: a run carries the exact policy it started with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(default="outreach-policy/1", description="Human label of the rule set.")
    min_confidence: float = Field(default=0.75, ge=0.0, le=1.0,
                                  description="Below this planner confidence an action needs approval.")
    high_risk_lace: int = Field(default=10, ge=0, le=19,
                                description="LACE at or above this makes a care plan need a clinician.")
    care_plan_approver: Role = "rn"
    low_confidence_approver: Role = "care_coordinator"
    low_confidence_clinical_approver: Role = Field(
        default="rn", description="Approver for a low-confidence care plan (clinical content).")
    adverse_approver: Role = Field(default="md", description="Always required for an adverse action.")
    contact_window_start: time = Field(default=time(8), description="TCPA: earliest contact, member-local.")
    contact_window_end: time = Field(default=time(21),
                                     description="TCPA: no contact at or after this member-local time.")
    sms_max_chars: int = Field(default=160, ge=1)
    business_day_end_hour: int = Field(default=17, ge=1, le=24,
                                       description="End of business for TCM due dates.")
    tcm_contact_business_days: int = Field(default=2, ge=1)
    holidays: tuple[date, ...] = Field(default=(), description="Non-business days for TCM clocks.")
    approvals: ApprovalRouting = Field(default_factory=ApprovalRouting)
    # Added after runs were recorded: left out of the policy's content (and id) at their defaults.
    max_contacts_per_week: int = Field(default=3, ge=1, exclude_if=lambda v: v == 3, description=(
        "The plan's frequency cap: messages careloom sends a member in any 7 days, across programs. A lower-"
        "priority message (a care-gap reminder) waits for room; post-discharge outreach is never held back by one."))
    marketing_terms: tuple[str, ...] = Field(
        default=("special offer", "discount", "upgrade your plan", "promotion", "premium payment",
                 "pay your bill", "billing", "past due"),
        description="Phrases (matched as whole words) that make a message marketing or billing "
                    "content, which the TCPA healthcare exemption does not cover.")

    @model_validator(mode="after")
    def _window_is_ordered(self) -> "GuardrailPolicy":
        if self.contact_window_end <= self.contact_window_start:
            raise ValueError("contact_window_end must be after contact_window_start")
        return self

    @property
    def contact_window_label(self) -> str:
        return f"{self.contact_window_start:%H:%M}-{self.contact_window_end:%H:%M}"

    @property
    def policy_id(self) -> str:
        """``version#sha256[:10]`` of the whole content: what verdicts record."""
        digest = hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:10]
        return f"{self.version}#{digest}"
