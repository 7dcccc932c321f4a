"""Typed RunFacts and ProposedActions for guardrail tests, built from the real tool models (no store)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from guardrails.actions import ProposedAction
from guardrails.facts import RunFacts
from tools.care_plan import CarePlanActivity, DraftCarePlanArgs, GoalSpec
from tools.clinical import ClinicalContext, IndexStay
from tools.eligibility import EligibilityResult
from tools.member import Channel, MemberProfile
from tools.outreach import SendOutreachArgs
from tools.risk import RiskInput, RiskScore, score_readmission_risk
from tools.tasks import CreateTaskArgs

__all__ = ["DISCHARGED", "care_plan", "make_facts", "outreach", "scored_risk", "task"]

DISCHARGED = datetime(2024, 6, 10, 14, 0, tzinfo=UTC)


def scored_risk(los: int = 2, acute: bool = True, codes: tuple[str, ...] = (), ed: int = 0) -> RiskScore:
    """A risk score from the real LACE scorer (defaults: L2 + A3 + C0 + E0 = 5)."""
    return score_readmission_risk(
        RiskInput(length_of_stay_days=los, acute_admission=acute, condition_codes=list(codes), ed_visits_6mo=ed))


def make_facts(
    *,
    opted_out: bool = False,
    deceased: bool = False,
    channels: tuple[Channel, ...] = ("sms", "phone", "letter"),
    time_zone: str = "America/New_York",
    risk: RiskScore | None = None,
    discharged_at: datetime | None = DISCHARGED,
    outcome: str = "complete",
    inforce: bool = True,
    reason: str | None = None,
    on_date: date = date(2024, 6, 10),
) -> RunFacts:
    member = MemberProfile(
        member_id="pt-guard-1", pseudonym="mbr-000000000001", age_years=74, deceased=deceased,
        preferred_language="en-US", time_zone=time_zone, time_zone_known=True, channels=list(channels),
        preferred_channel=channels[0] if channels else None, opted_out=opted_out,
    )
    admitted = DISCHARGED - timedelta(days=3)
    stay = IndexStay(
        encounter_id="enc-guard-1", admitted_at=admitted, discharged_at=discharged_at,
        length_of_stay_days=3 if discharged_at else None, admit_source="emd", acute_admission=True,
        discharge_disposition="home" if discharged_at else None,
    )
    clinical = ClinicalContext(member_id="pt-guard-1", stay=stay, condition_codes=[], ed_visits_6mo=0)
    eligibility = EligibilityResult(
        member_id="pt-guard-1", on_date=on_date, outcome=outcome, inforce=inforce,
        plan_type="medicare_advantage" if inforce else None, reason=reason,
    )
    return RunFacts(member=member, clinical=clinical, eligibility=eligibility,
                    risk=risk if risk is not None else scored_risk())


def outreach(message: str = "Hello from your care team. How are you feeling since you got home?",
             *, channel: Channel = "sms", confidence: float = 0.95) -> ProposedAction:
    return ProposedAction(
        action_id="a1-outreach", rationale="post-discharge check-in", confidence=confidence,
        arguments=SendOutreachArgs(channel=channel, template="post-discharge-check-in", message=message),
    )


def task(kind: str = "tcm-interactive-contact", *, service_effect: str = "none",
         confidence: float = 0.95) -> ProposedAction:
    return ProposedAction(
        action_id="a2-task", rationale="TCM contact", confidence=confidence,
        arguments=CreateTaskArgs(
            kind=kind, queue="care-management/post-discharge", priority="urgent",
            description="Call the member within two business days", reason="recent inpatient discharge",
            due=DISCHARGED + timedelta(days=4), service_effect=service_effect,
        ),
    )


def care_plan(*, confidence: float = 0.95) -> ProposedAction:
    return ProposedAction(
        action_id="a3-care-plan", rationale="post-discharge plan", confidence=confidence,
        arguments=DraftCarePlanArgs(
            title="Post-discharge plan",
            goals=[GoalSpec(description="Follow-up visit within 7 days", due_in_days=7)],
            activities=[CarePlanActivity(kind="medication-reconciliation", description="Reconcile meds",
                                         due_in_days=7)],
        ),
    )
