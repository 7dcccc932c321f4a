"""The offline, deterministic planner (the default when no model is configured).

Rules (``offline-rules/1``), from the facts of one discharge:

1. Member deceased → one action only: a ``close-care-episode`` Task for case
   review. It terminates a service, so the guardrails always send it to an MD.
   No member outreach.
2. Otherwise a ``tcm-interactive-contact`` Task for the post-discharge queue,
   due at the TCM deadline (end of business, 2 business days after
   discharge); priority ``urgent`` when LACE is at or above the policy's high
   risk cut-off or could not be scored, else ``routine``.
3. A check-in message on the member's preferred channel (sms, phone, email,
   letter; SMS text at most 160 characters, no marketing or billing words).
   No channel → no message, and the Task says so.
4. LACE ≥ 5, or LACE not scorable → a draft CarePlan: follow-up visit within
   7 days (LACE ≥ the high-risk cut-off or unscored) or 14 days, medication
   reconciliation by the follow-up date, and monitoring items for the
   Charlson categories found.

Confidence of each action = Σ weight × value over four signals:
data completeness (0.50; 1.0 when LACE was scored, else 0.4), reachability
(0.25; 1.0 with a channel and a known time zone, 0.6 with a defaulted zone,
0.3 without a channel), eligibility certainty (0.15; 1.0 when the
eligibility outcome is complete) and rule specificity (0.10; 0.9 for these
rules).
"""

from __future__ import annotations

from agents.planner import PlannerInput, PlannerOutput
from guardrails.actions import ConfidenceSignal, ProposedAction
from guardrails.facts import RunFacts
from tools.care_plan import CarePlanActivity, DraftCarePlanArgs, GoalSpec
from tools.outreach import SendOutreachArgs
from tools.tasks import CreateTaskArgs

__all__ = ["CHECK_IN_MESSAGE", "OfflinePlanner", "evidence_for", "evidence_signals"]

NAME = "offline-rules/1"
POST_DISCHARGE_QUEUE = "care-management/post-discharge"
CASE_REVIEW_QUEUE = "care-management/case-review"
CHECK_IN_MESSAGE = (
    "Your health plan care team is checking in after your recent hospital stay. "
    "Reply or call the number on your member card if you need help."
)
_MONITORING = {
    "congestive_heart_failure": "Daily weight and symptom check for heart failure",
    "chronic_pulmonary": "Breathing symptoms and inhaler use check",
    "diabetes_uncomplicated": "Blood glucose monitoring review",
    "diabetes_complicated": "Blood glucose monitoring review",
    "renal": "Kidney function follow-up labs",
}


def signals_for(facts: RunFacts, *, needs_contact: bool) -> list[ConfidenceSignal]:
    """The rules' confidence signals: the evidence, and how specific the rule that proposed the action is."""
    return [*evidence_signals(facts, needs_contact=needs_contact),
            ConfidenceSignal(name="rule_specificity", value=0.9, weight=0.1, note=NAME)]


def evidence_signals(facts: RunFacts, *, needs_contact: bool) -> list[ConfidenceSignal]:
    """How complete and certain the facts behind an action are (weights 0.5 / 0.25 / 0.15)."""
    scored = facts.risk.status == "scored"
    member = facts.member
    if not needs_contact or (member.preferred_channel and member.time_zone_known):
        reach, note = 1.0, "channel and time zone known"
    elif member.preferred_channel:
        reach, note = 0.6, f"time zone defaulted ({member.time_zone_basis})"
    else:
        reach, note = 0.3, "no contact channel"
    return [
        ConfidenceSignal(name="data_completeness", value=1.0 if scored else 0.4, weight=0.5,
                         note="LACE scored" if scored else f"LACE missing {','.join(facts.risk.missing)}"),
        ConfidenceSignal(name="reachability", value=reach, weight=0.25, note=note),
        ConfidenceSignal(name="eligibility_certainty",
                         value=1.0 if facts.eligibility.outcome == "complete" else 0.5, weight=0.15,
                         note=f"eligibility outcome {facts.eligibility.outcome}"),
    ]


def _confidence(signals: list[ConfidenceSignal]) -> float:
    return round(sum(s.weight * s.value for s in signals), 4)


def evidence_for(facts: RunFacts) -> list[str]:
    stay = facts.clinical.stay
    out = [
        f"discharged={stay.discharged_at.isoformat() if stay.discharged_at else 'no'}",
        f"disposition={stay.discharge_disposition or 'unknown'}",
        f"eligibility={facts.eligibility.plan_type or 'none'}:{'inforce' if facts.eligibility.inforce else 'not-inforce'}",
    ]
    if facts.risk.status == "scored" and facts.risk.components:
        c = facts.risk.components
        out.append(f"LACE={facts.risk.lace} (L{c.l} A{c.a} C{c.c} E{c.e})")
    else:
        out.append(f"LACE=insufficient_data ({','.join(facts.risk.missing)})")
    return out


class OfflinePlanner:
    """Rule-based planner; same facts in, same proposals out."""

    name = NAME

    async def plan(self, data: PlannerInput) -> PlannerOutput:
        return PlannerOutput(planner=NAME, proposals=self.propose(data))

    def plan_for_review(self, data: PlannerInput, reason: str) -> PlannerOutput:
        """The rules' plan standing in for a model that could not plan: every action goes to a human."""
        proposals = [p.model_copy(update={"review_reasons": [*p.review_reasons, reason]})
                     for p in self.propose(data)]
        return PlannerOutput(planner=f"{NAME} (fallback)", proposals=proposals)

    def propose(self, data: PlannerInput) -> list[ProposedAction]:
        facts = data.facts
        evidence = evidence_for(facts)
        member = facts.member
        due = facts.tcm_contact_due
        if member.deceased:
            signals = signals_for(facts, needs_contact=False)
            return [ProposedAction(
                action_id="a1-close-episode",
                arguments=CreateTaskArgs(
                    kind="close-care-episode", queue=CASE_REVIEW_QUEUE, priority="routine",
                    description="Review and close the post-discharge care-management episode",
                    reason="member is recorded as deceased", service_effect="terminates",
                    due=due or facts.clinical.stay.admitted_at,
                ),
                rationale="The member record says deceased: no outreach; the episode should be closed "
                          "by a clinician.",
                evidence=[*evidence, "deceased=true"], confidence=_confidence(signals), signals=signals,
            )]
        high_risk = facts.risk.status != "scored" or (facts.lace or 0) >= data.high_risk_lace
        proposals: list[ProposedAction] = []
        channel = member.preferred_channel
        task_signals = signals_for(facts, needs_contact=False)
        proposals.append(ProposedAction(
            action_id="a1-tcm-task",
            arguments=CreateTaskArgs(
                kind="tcm-interactive-contact", queue=POST_DISCHARGE_QUEUE,
                priority="urgent" if high_risk else "routine",
                description="Interactive post-discharge contact (TCM): call the member, review "
                            "medications and confirm the follow-up visit",
                reason="inpatient discharge" + ("" if channel else "; no contact channel on file"),
                due=due or facts.clinical.stay.admitted_at,
            ),
            rationale="Every discharge needs an interactive contact within 2 business days (TCM).",
            evidence=evidence, confidence=_confidence(task_signals), signals=task_signals,
        ))
        if channel is not None:
            signals = signals_for(facts, needs_contact=True)
            proposals.append(ProposedAction(
                action_id="a2-check-in",
                arguments=SendOutreachArgs(channel=channel, template="post-discharge-check-in",
                                           message=CHECK_IN_MESSAGE),
                rationale=f"Reach the member on the preferred channel ({channel}) soon after discharge.",
                evidence=[*evidence, f"channel={channel}", f"tz={member.time_zone}"],
                confidence=_confidence(signals), signals=signals,
            ))
        if facts.risk.status != "scored" or (facts.lace or 0) >= 5:
            follow_up_days = 7 if high_risk else 14
            activities = [
                CarePlanActivity(kind="follow-up-visit", due_in_days=follow_up_days,
                                 description=f"Face-to-face follow-up visit within {follow_up_days} days"),
                CarePlanActivity(kind="medication-reconciliation", due_in_days=follow_up_days,
                                 description="Reconcile discharge medications with the member's list"),
            ]
            for category in facts.risk.charlson_categories:
                if category in _MONITORING:
                    activities.append(CarePlanActivity(kind="monitoring", description=_MONITORING[category]))
            signals = signals_for(facts, needs_contact=False)
            proposals.append(ProposedAction(
                action_id="a3-care-plan",
                arguments=DraftCarePlanArgs(
                    title="Post-discharge transitional care plan",
                    goals=[
                        GoalSpec(description=f"Attend a follow-up visit within {follow_up_days} days",
                                 due_in_days=follow_up_days),
                        GoalSpec(description="No readmission within 30 days", due_in_days=30),
                    ],
                    activities=activities,
                ),
                rationale=("High readmission risk" if high_risk else "Moderate readmission risk")
                + ": a transitional care plan with early follow-up and medication reconciliation.",
                evidence=evidence, confidence=_confidence(signals), signals=signals,
            ))
        return proposals
