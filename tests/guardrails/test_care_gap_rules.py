"""Tests for guardrails.care_gap_rules: the care-gap program's rules on hand-built facts.

The facts are the real models: a member profile (from the outreach test helper), coverage on a date, and a gap
review over the four shipped measures, built by hand. The outreach rules' checks (opt-out, deceased, contact
hours) must come through unchanged; the program's own blocks (clinical words in a reminder, coverage, a
proposal that is not a care-gap action) are added on top.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from agents.care_gap_planner import GapPlannerInput, OfflineGapRules
from guardrails.actions import ProposedAction
from guardrails.care_gap_rules import (
    GAP_TASK_KINDS,
    NAMES_CONDITION,
    check_gap_run,
    clinical_terms_in,
    evaluate_gap_action,
    gap_terms,
)
from guardrails.facts import CareGapFacts
from guardrails.policy import GuardrailPolicy
from tests.guardrails.run_facts import care_plan, make_facts, task
from tools.care_gaps import GapReview, GapStatus
from tools.eligibility import EligibilityResult
from tools.member import Channel
from tools.outreach import SendOutreachArgs
from tools.tasks import CreateTaskArgs

POLICY = GuardrailPolicy()
IN_HOURS = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 10:00 in New York
AT_NIGHT = datetime(2026, 3, 3, 3, 30, tzinfo=UTC)  # 22:30 in New York, March 2
NEXT_OPENING = datetime(2026, 3, 3, 13, 0, tzinfo=UTC)  # 08:00 in New York, March 3
MEASURES = {
    "cms122-diabetes-hba1c-poor-control": "Diabetes: Hemoglobin A1c (HbA1c) Poor Control (> 9%)",
    "cms125-breast-cancer-screening": "Breast Cancer Screening",
    "cms165-controlling-high-blood-pressure": "Controlling High Blood Pressure",
    "mrp-medication-reconciliation-post-discharge": "Medication Reconciliation Post-Discharge (30 days)",
}
REMINDER = ("Your health plan: you are due for recommended preventive care. Please call your doctor's office to "
            "schedule a visit. 2 items are due.")


def make_gap_facts(*, open_ids: tuple[str, ...] = ("cms122-diabetes-hba1c-poor-control",
                                                   "cms165-controlling-high-blood-pressure"),
                   closed_ids: tuple[str, ...] = ("cms125-breast-cancer-screening",),
                   channels: tuple[Channel, ...] = ("sms", "phone", "letter"), opted_out: bool = False,
                   deceased: bool = False, inforce: bool = True, outcome: str = "complete",
                   period_end: date = date(2026, 12, 31), time_zone_known: bool = True) -> CareGapFacts:
    """One member's review for 2026: ``open_ids`` open, ``closed_ids`` met; the rest do not apply."""
    member = make_facts(channels=channels, opted_out=opted_out, deceased=deceased).member
    member = member.model_copy(update={"time_zone_known": time_zone_known})
    gaps = [GapStatus(measure_id=m, title=title, in_denominator=m in open_ids or m in closed_ids,
                      gap_open=m in open_ids, evidence=["Encounter/office-1"] if m in open_ids or m in closed_ids
                      else [])
            for m, title in MEASURES.items()]
    review = GapReview(period_start=date(2026, 1, 1), period_end=period_end,
                       measures_version=",".join(f"{m}@1.0.0" for m in MEASURES), gaps=gaps)
    eligibility = EligibilityResult(
        member_id="pt-guard-1", on_date=date(2026, 3, 2), outcome=outcome, inforce=inforce,
        plan_type="medicare_advantage" if inforce else None,
        reason=None if inforce else ("coverage ended 2026-02-28" if outcome == "complete" else "payer timeout"))
    return CareGapFacts(member=member, eligibility=eligibility, review=review)


def reminder(message: str = REMINDER, *, channel: Channel = "sms", confidence: float = 0.95) -> ProposedAction:
    return ProposedAction(action_id="g1-reminder", rationale="care is due", confidence=confidence,
                          arguments=SendOutreachArgs(channel=channel, template="follow-up-reminder",
                                                     message=message))


def gap_task(kind: str = "gap-closure-scheduling") -> ProposedAction:
    return ProposedAction(action_id="g2-scheduling", rationale="book the visits", confidence=0.95,
                          arguments=CreateTaskArgs(kind=kind, queue="care-gaps/scheduling", priority="routine",
                                                   description="Help the member schedule the visits that close: "
                                                               "cms122-diabetes-hba1c-poor-control",
                                                   reason="open care gaps: cms122-diabetes-hba1c-poor-control",
                                                   due=IN_HOURS + timedelta(days=14)))


# --- what the outreach rules decide, through the gap rules unchanged ---------------------------------------


def test_a_normal_reminder_within_contact_hours_is_allowed() -> None:
    verdict = evaluate_gap_action(reminder(), make_gap_facts(), POLICY, now=IN_HOURS)
    assert (verdict.decision, verdict.reasons) == ("allow", ["within policy"])
    assert verdict.policy_id == POLICY.policy_id and verdict.evaluated_at == IN_HOURS


@pytest.mark.parametrize("kind", sorted(GAP_TASK_KINDS))
def test_both_gap_task_kinds_are_allowed(kind: str) -> None:
    assert evaluate_gap_action(gap_task(kind), make_gap_facts(), POLICY, now=IN_HOURS).decision == "allow"


def test_an_opted_out_member_gets_no_reminder() -> None:
    verdict = evaluate_gap_action(reminder(), make_gap_facts(opted_out=True), POLICY, now=IN_HOURS)
    assert verdict.decision == "block"
    assert "member opted out of outreach" in verdict.reasons


def test_a_deceased_member_gets_no_reminder() -> None:
    verdict = evaluate_gap_action(reminder(), make_gap_facts(deceased=True), POLICY, now=IN_HOURS)
    assert verdict.decision == "block"
    assert "member is recorded as deceased" in verdict.reasons


def test_a_channel_the_member_does_not_have_is_blocked() -> None:
    verdict = evaluate_gap_action(reminder(channel="email"), make_gap_facts(), POLICY, now=IN_HOURS)
    assert verdict.decision == "block"
    assert "no contact point for channel email" in verdict.reasons


def test_a_reminder_at_night_in_the_members_zone_is_deferred_to_the_next_opening() -> None:
    verdict = evaluate_gap_action(reminder(), make_gap_facts(), POLICY, now=AT_NIGHT)
    assert verdict.decision == "defer"
    assert verdict.defer_until == NEXT_OPENING
    assert verdict.reasons[0].startswith("outside TCPA contact hours (08:00-21:00 America/New_York")


def test_now_none_skips_contact_hours() -> None:
    assert evaluate_gap_action(reminder(), make_gap_facts(), POLICY, now=None).decision == "allow"


def test_a_low_confidence_reminder_needs_a_coordinator_until_one_approved_it() -> None:
    action = reminder(confidence=0.5)
    asked = evaluate_gap_action(action, make_gap_facts(), POLICY, now=IN_HOURS)
    assert (asked.decision, asked.required_role) == ("require_approval", "care_coordinator")
    approved = evaluate_gap_action(action, make_gap_facts(), POLICY, now=IN_HOURS,
                                   approved_role="care_coordinator")
    assert approved.decision == "allow"


# --- the program's own blocks ----------------------------------------------------------------------------


@pytest.mark.parametrize("message", [
    "Your health plan: your mammogram is due. Please call your doctor's office.",
    "Your health plan: time for your A1C test. Please call your doctor's office.",
    "Your health plan: please have your blood pressure checked at your doctor's office.",
    "Your health plan: two screenings are due. Please call your doctor's office.",
    "Your health plan: please bring your medications to your next visit.",
])
def test_a_reminder_naming_a_condition_or_test_is_blocked(message: str) -> None:
    verdict = evaluate_gap_action(reminder(message), make_gap_facts(), POLICY, now=IN_HOURS)
    assert verdict.decision == "block"
    assert verdict.reasons[0].startswith(NAMES_CONDITION)


def test_an_open_measures_title_words_are_clinical_terms_too() -> None:
    facts = make_gap_facts()
    assert {"hemoglobin", "controlling"} <= set(gap_terms(facts))
    assert "breast" not in gap_terms(facts)  # closed measure: its title adds nothing
    verdict = evaluate_gap_action(reminder("Your health plan: your hemoglobin check is due."), facts, POLICY,
                                  now=IN_HOURS)
    assert verdict.decision == "block"
    assert verdict.reasons == [f"{NAMES_CONDITION}: hemoglobin"]


def test_the_generic_reminder_names_nothing_clinical() -> None:
    every_gap_open = make_gap_facts(open_ids=tuple(MEASURES), closed_ids=())
    assert clinical_terms_in(REMINDER, every_gap_open) == []


def test_clinical_words_in_a_task_are_for_staff_and_not_blocked() -> None:
    # The scheduling task names cms122-diabetes-...: staff need the measure; only member-facing text is limited.
    assert evaluate_gap_action(gap_task(), make_gap_facts(), POLICY, now=IN_HOURS).decision == "allow"


@pytest.mark.parametrize("action", [reminder(), gap_task(), gap_task("pcp-gap-notification")])
def test_any_action_for_a_member_not_in_force_is_blocked(action: ProposedAction) -> None:
    verdict = evaluate_gap_action(action, make_gap_facts(inforce=False), POLICY, now=IN_HOURS)
    assert verdict.decision == "block"
    assert "member not eligible on 2026-03-02: coverage ended 2026-02-28" in verdict.reasons


def test_an_eligibility_error_blocks_an_action() -> None:
    verdict = evaluate_gap_action(gap_task(), make_gap_facts(inforce=False, outcome="error"), POLICY,
                                  now=IN_HOURS)
    assert (verdict.decision, verdict.reasons) == ("block", ["eligibility could not be determined: payer timeout"])


def test_a_care_plan_is_not_a_care_gap_action() -> None:
    # The gap facts have no readmission risk: the outreach rules would fail on it, so it must stop here.
    verdict = evaluate_gap_action(care_plan(), make_gap_facts(), POLICY, now=IN_HOURS)
    assert verdict.decision == "block"
    assert verdict.reasons[0].startswith("not a care-gap action: a draft_care_plan proposal")


@pytest.mark.parametrize("kind", ["tcm-interactive-contact", "close-care-episode", "outreach-follow-up"])
def test_a_task_of_another_kind_is_blocked(kind: str) -> None:
    verdict = evaluate_gap_action(task(kind), make_gap_facts(), POLICY, now=IN_HOURS)
    assert verdict.decision == "block"
    assert verdict.reasons[0].startswith(f"not a care-gap action: a {kind} task")
    assert verdict.required_role is None


def test_a_block_overrides_a_deferral_and_drops_it() -> None:
    verdict = evaluate_gap_action(reminder("Your mammogram is due."), make_gap_facts(), POLICY, now=AT_NIGHT)
    assert (verdict.decision, verdict.defer_until) == ("block", None)
    assert verdict.reasons == [f"{NAMES_CONDITION}: mammogram"]


def test_blocks_from_both_rule_sets_are_reported_together() -> None:
    verdict = evaluate_gap_action(reminder("Your mammogram is due."), make_gap_facts(opted_out=True), POLICY,
                                  now=IN_HOURS)
    assert verdict.decision == "block"
    assert verdict.reasons[:2] == [f"{NAMES_CONDITION}: mammogram", "member opted out of outreach"]


def test_the_offline_plan_passes_the_gap_rules_in_contact_hours() -> None:
    facts = make_gap_facts()
    plan = OfflineGapRules().plan(GapPlannerInput(workflow_id="wf-1", facts=facts, now=IN_HOURS))
    verdicts = {p.action_id: evaluate_gap_action(p, facts, POLICY, now=IN_HOURS).decision for p in plan.proposals}
    assert verdicts == {"g1-reminder": "allow", "g2-scheduling": "allow", "g3-pcp": "allow"}


# --- the run-level check ----------------------------------------------------------------------------------


def test_a_covered_member_passes_the_run_check_even_with_no_open_gap() -> None:
    assert check_gap_run(make_gap_facts(), POLICY) is None
    assert check_gap_run(make_gap_facts(open_ids=(), closed_ids=()), POLICY) is None


def test_a_member_not_in_force_blocks_the_run() -> None:
    verdict = check_gap_run(make_gap_facts(inforce=False), POLICY)
    assert verdict is not None
    assert (verdict.action_id, verdict.decision) == ("run", "block")
    assert verdict.reasons == ["member not eligible on 2026-03-02: coverage ended 2026-02-28"]


def test_an_eligibility_error_blocks_the_run() -> None:
    verdict = check_gap_run(make_gap_facts(inforce=False, outcome="error"), POLICY)
    assert verdict is not None and verdict.decision == "block"
    assert verdict.reasons == ["eligibility could not be determined: payer timeout"]
