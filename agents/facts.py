"""What the read tools found for one run: the input to planning and guardrails."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from tools.clinical import ClinicalContext
from tools.eligibility import EligibilityResult
from tools.member import MemberProfile
from tools.risk import RiskScore

__all__ = ["RunFacts"]


class RunFacts(BaseModel):
    """Compact typed facts (codes and counts, no records or free text)."""

    member: MemberProfile
    clinical: ClinicalContext
    eligibility: EligibilityResult
    risk: RiskScore
    tcm_contact_due: datetime | None = Field(
        default=None, description="TCM interactive-contact deadline (2 business days after discharge).")

    @property
    def lace(self) -> int | None:
        return self.risk.lace
