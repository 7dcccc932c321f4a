"""The one typed, versioned guardrail policy.

Thresholds and rules live here; every verdict records :attr:`GuardrailPolicy.policy_id`
(the version label plus a hash of the content), so an audit can tell exactly
which rules routed a case, even when a threshold was overridden by settings.
"""

from __future__ import annotations

import hashlib
from datetime import date, time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["GuardrailPolicy", "ROLE_RANK", "Role", "ServiceEffect"]

Role = Literal["care_coordinator", "rn", "md"]
"""Approver roles, least to most authority."""

ROLE_RANK: dict[str, int] = {"care_coordinator": 1, "rn": 2, "md": 3}

ServiceEffect = Literal["none", "denies", "delays", "reduces", "terminates"]
"""What an action does to a member's services; anything but ``none`` is adverse."""


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
