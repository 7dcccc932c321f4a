"""What the read tools found for one run, per program: the input to planning and guardrails."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from tools.care_gap_models import GapReview
from tools.clinical import ClinicalContext
from tools.eligibility import EligibilityResult
from tools.evidence_review import EvidenceReview
from tools.member import MemberProfile
from tools.risk import RiskScore

__all__ = ["CareGapFacts", "PriorAuthFacts", "RunFacts"]


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


class PriorAuthFacts(BaseModel):
    """What the read tools found: the member (minimum necessary), coverage on the service date, the evidence."""

    member: MemberProfile
    eligibility: EligibilityResult
    review: EvidenceReview


class CareGapFacts(BaseModel):
    """What the care-gap run's read tools found: the member (minimum necessary), coverage today, the gaps."""

    member: MemberProfile
    eligibility: EligibilityResult
    review: GapReview
