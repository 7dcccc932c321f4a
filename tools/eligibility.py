"""``check_eligibility``: is coverage in force on a date, in the terms of a FHIR
CoverageEligibilityResponse (``outcome`` complete/error, ``inforce``).

``also_on`` asks for a second date too (outreach: the discharge date and
today): a member covered when discharged whose coverage has ended since is
not in force, with the reason naming both dates. A 2023 discharge whose plan
ended in 2024 is no longer a member outreach can help.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, Field

from store.records import CareRecordStore
from tools.errors import MEMBER_NOT_FOUND, tool_error

__all__ = ["EligibilityInput", "EligibilityResult", "PlanType", "check_eligibility", "plan_type_of"]

PlanType = Literal[
    "medicare", "medicare_advantage", "medicaid", "dual", "commercial", "chip", "other_public", "self_pay",
    "unknown",
]

# Ordered: the first matching phrase in Coverage.type (text or display) wins.
_PLAN_PHRASES: tuple[tuple[str, PlanType], ...] = (
    ("dual eligible", "dual"),
    ("medicare + medicaid", "dual"),
    ("medicare-medicaid", "dual"),
    ("medicare advantage", "medicare_advantage"),
    ("part c", "medicare_advantage"),
    ("medicare", "medicare"),
    ("medicaid", "medicaid"),
    ("chip", "chip"),
    ("self-pay", "self_pay"),
    ("uninsured", "self_pay"),
    ("va /", "other_public"),
    ("veterans", "other_public"),
    ("tricare", "other_public"),
    ("employer", "commercial"),
    ("private", "commercial"),
    ("commercial", "commercial"),
)


class EligibilityInput(BaseModel):
    member_id: str
    on_date: date = Field(description="Date of service to check (the discharge date for outreach).")
    also_on: date | None = Field(default=None, description="A second date the coverage must be in force on too "
                                 "(e.g. today, for outreach long after a discharge); unset: ``on_date`` only.")


class EligibilityResult(BaseModel):
    """Mirrors CoverageEligibilityResponse: outcome, and insurance.inforce for the date."""

    member_id: str
    on_date: date
    outcome: Literal["complete", "error"]
    inforce: bool
    plan_type: PlanType | None = None
    coverage_id: str | None = None
    reason: str | None = Field(default=None, description="Why coverage is not in force, or the error.")


def plan_type_of(coverage: dict[str, Any]) -> PlanType:
    ctype = coverage.get("type") or {}
    words = " ".join(
        [ctype.get("text") or ""] + [c.get("display") or c.get("code") or "" for c in ctype.get("coding") or []]
    ).lower()
    for phrase, plan in _PLAN_PHRASES:
        if phrase in words:
            return plan
    return "unknown"


def _covers(coverage: dict[str, Any], on: date) -> bool | None:
    period = coverage.get("period") or {}
    try:
        start = date.fromisoformat(period["start"][:10]) if period.get("start") else None
        end = date.fromisoformat(period["end"][:10]) if period.get("end") else None
    except ValueError:
        return None
    return (start is None or start <= on) and (end is None or on <= end)


def check_eligibility(store: CareRecordStore, data: EligibilityInput) -> EligibilityResult:
    if store.get("Patient", data.member_id) is None:
        raise tool_error(MEMBER_NOT_FOUND, f"no Patient with id {data.member_id!r} in the care records store")
    coverages = store.find_for_member("Coverage", data.member_id)
    first = _eligibility_on(coverages, data.member_id, data.on_date)
    if data.also_on is None or data.also_on == data.on_date or not first.inforce:
        return first
    later = _eligibility_on(coverages, data.member_id, data.also_on)
    if later.inforce:
        return first
    ended = _period_end(coverages, first.coverage_id)
    since = f"coverage {first.coverage_id} ended {ended}" if ended else f"coverage {first.coverage_id} lapsed"
    return first.model_copy(update={
        "inforce": False, "outcome": later.outcome,
        "reason": (f"{since}: in force on {data.on_date.isoformat()} but not on {data.also_on.isoformat()} "
                   f"({later.reason})")})


def _period_end(coverages: list[dict[str, Any]], coverage_id: str | None) -> str | None:
    for coverage in coverages:
        if coverage.get("id") == coverage_id:
            return (coverage.get("period") or {}).get("end")
    return None


def _eligibility_on(coverages: list[dict[str, Any]], member_id: str, on: date) -> EligibilityResult:
    """Eligibility on one date, from the member's Coverage resources."""
    base = {"member_id": member_id, "on_date": on}
    if not coverages:
        return EligibilityResult(**base, outcome="complete", inforce=False, reason="no coverage on file")
    undecidable = 0
    lapsed: dict[str, Any] | None = None
    self_pay: dict[str, Any] | None = None
    for coverage in coverages:
        covers = _covers(coverage, on)
        if covers is None:
            undecidable += 1
            continue
        if not covers:
            continue
        status = coverage.get("status")
        # A cancelled coverage stays in force up to its period end (the termination date).
        if status != "active" and not (status == "cancelled" and (coverage.get("period") or {}).get("end")):
            lapsed = coverage
            continue
        plan = plan_type_of(coverage)
        if plan == "self_pay":
            self_pay = coverage  # keep looking: a real plan on the same date wins
            continue
        return EligibilityResult(**base, outcome="complete", inforce=True, plan_type=plan, coverage_id=coverage["id"])
    if self_pay is not None:
        return EligibilityResult(**base, outcome="complete", inforce=False, plan_type="self_pay",
                                 coverage_id=self_pay["id"], reason="self-pay: no health plan coverage")
    if undecidable == len(coverages):
        return EligibilityResult(**base, outcome="error", inforce=False,
                                 reason="coverage periods are unreadable; fix the Coverage records")
    if lapsed is not None:
        return EligibilityResult(**base, outcome="complete", inforce=False, plan_type=plan_type_of(lapsed),
                                 coverage_id=lapsed["id"], reason=f"coverage status is {lapsed.get('status')}")
    return EligibilityResult(**base, outcome="complete", inforce=False,
                             reason=f"no coverage period includes {on.isoformat()}")
