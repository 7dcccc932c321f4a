"""Tests for guardrails.outreach_rules: evaluate_action and check_run on typed facts."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from guardrails.outreach_rules import check_run, evaluate_action, service_effect
from guardrails.policy import GuardrailPolicy
from tests.guardrails.run_facts import care_plan, make_facts, outreach, scored_risk, task
from tools.risk import RiskInput, score_readmission_risk

POLICY = GuardrailPolicy()
NOON_NY = datetime(2024, 6, 11, 16, 0, tzinfo=UTC)        # Tue 12:00 EDT
NIGHT_NY = datetime(2024, 6, 12, 1, 30, tzinfo=UTC)       # Tue 21:30 EDT
NEXT_MORNING_NY = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)  # Wed 08:00 EDT


def _decide(action, facts=None, policy=POLICY, now=NOON_NY, approved_role=None):
    verdict = evaluate_action(action, facts or make_facts(), policy, now=now, approved_role=approved_role)
    return verdict.decision, verdict.required_role


# --- adverse actions: never without an MD ------------------------------------

@pytest.mark.parametrize("effect", ["denies", "delays", "reduces", "terminates"])
def test_adverse_task_needs_md_even_at_full_confidence(effect):
    """A task that denies, delays, reduces or terminates a service needs an MD, even at confidence 1.0."""
    action = task("follow-up-visit", service_effect=effect, confidence=1.0)

    assert ("require_approval", "md") == _decide(action)


@pytest.mark.parametrize("kind", ["close-care-episode", "reduce-service"])
def test_adverse_task_kind_needs_md_even_when_declared_harmless(kind):
    """A close-care-episode or reduce-service task needs an MD even if the planner declares no service effect."""
    action = task(kind, service_effect="none", confidence=1.0)

    assert ("require_approval", "md") == _decide(action)


def test_adverse_kind_keeps_its_effect_when_declared_none():
    """service_effect of a reduce-service task declared 'none' is 'reduces'."""
    assert "reduces" == service_effect(task("reduce-service", service_effect="none"))


def test_rn_approval_does_not_satisfy_an_adverse_action():
    """An RN's approval is not enough for an adverse action: it still requires an MD."""
    action = task("close-care-episode", confidence=1.0)

    assert ("require_approval", "md") == _decide(action, approved_role="rn")


def test_md_approval_releases_an_adverse_action():
    """After an MD approved the exact action, it is allowed."""
    action = task("follow-up-visit", service_effect="denies", confidence=1.0)

    assert ("allow", None) == _decide(action, approved_role="md")


def test_md_approval_is_recorded_in_the_reasons():
    """An approval that satisfied the rules is named in the verdict's reasons."""
    verdict = evaluate_action(task("reduce-service"), make_facts(), POLICY, now=NOON_NY, approved_role="md")

    assert ["approved by md: action reduces a service: a clinician (md) must decide"] == verdict.reasons


def test_ordinary_task_with_high_confidence_is_allowed():
    """A non-adverse TCM contact task with confidence above the threshold is allowed."""
    assert ("allow", None) == _decide(task(confidence=0.9))


def test_task_is_not_deferred_at_night():
    """Contact hours govern calls and texts, not the creation of a work-queue task."""
    assert ("allow", None) == _decide(task(confidence=0.9), now=NIGHT_NY)


# --- confidence --------------------------------------------------------------

def test_low_confidence_task_needs_a_care_coordinator():
    """Below min_confidence a non-clinical action goes to a care coordinator."""
    assert ("require_approval", "care_coordinator") == _decide(task(confidence=0.5))


def test_low_confidence_care_plan_needs_an_rn():
    """Below min_confidence a care plan (clinical content) goes to an RN."""
    assert ("require_approval", "rn") == _decide(care_plan(confidence=0.5))


def test_confidence_equal_to_threshold_is_enough():
    """Confidence exactly at min_confidence does not need approval."""
    assert ("allow", None) == _decide(task(confidence=POLICY.min_confidence))


def test_low_confidence_threshold_comes_from_the_policy():
    """Raising min_confidence routes an action that the default policy allowed."""
    strict = GuardrailPolicy(min_confidence=0.99)

    assert ("require_approval", "care_coordinator") == _decide(task(confidence=0.95), policy=strict)


def test_adverse_low_confidence_action_needs_the_highest_role():
    """When several approvals are needed, the verdict asks for the most senior role."""
    assert ("require_approval", "md") == _decide(task("reduce-service", confidence=0.1))


# --- care plans and readmission risk -----------------------------------------

def test_high_risk_care_plan_needs_an_rn():
    """A care plan for a member with LACE >= high_risk_lace needs an RN, even at high confidence."""
    facts = make_facts(risk=scored_risk(los=7, acute=True, ed=2))  # 5 + 3 + 0 + 2 = 10

    assert ("require_approval", "rn") == _decide(care_plan(confidence=0.99), facts)


def test_care_plan_below_high_risk_with_high_confidence_is_allowed():
    """A care plan at LACE 9 with high confidence is allowed."""
    facts = make_facts(risk=scored_risk(los=4, acute=True, ed=2))  # 4 + 3 + 0 + 2 = 9

    assert ("allow", None) == _decide(care_plan(confidence=0.95), facts)


def test_high_risk_threshold_comes_from_the_policy():
    """Lowering high_risk_lace makes a LACE 9 care plan need an RN."""
    facts = make_facts(risk=scored_risk(los=4, acute=True, ed=2))

    assert ("require_approval", "rn") == _decide(care_plan(), facts, policy=GuardrailPolicy(high_risk_lace=9))


def test_care_plan_with_unscorable_risk_needs_approval():
    """A care plan whose risk is insufficient_data goes to an RN, naming the missing inputs."""
    risk = score_readmission_risk(RiskInput(length_of_stay_days=None, acute_admission=True,
                                            condition_codes=[], ed_visits_6mo=0))
    verdict = evaluate_action(care_plan(confidence=0.99), make_facts(risk=risk), POLICY, now=NOON_NY)

    assert ("require_approval", "rn", ["readmission risk could not be scored (length_of_stay_days)"]) == (
        verdict.decision, verdict.required_role, verdict.reasons)


def test_rn_approval_releases_a_high_risk_care_plan():
    """An RN's approval satisfies the high-risk care-plan rule."""
    facts = make_facts(risk=scored_risk(los=14, acute=True, ed=4))

    assert ("allow", None) == _decide(care_plan(), facts, approved_role="rn")


def test_care_coordinator_approval_does_not_release_a_high_risk_care_plan():
    """A care coordinator's approval is below the RN a high-risk care plan needs."""
    facts = make_facts(risk=scored_risk(los=14, acute=True, ed=4))

    assert ("require_approval", "rn") == _decide(care_plan(), facts, approved_role="care_coordinator")


# --- outreach: TCPA and consent ----------------------------------------------

def test_outreach_within_policy_is_allowed():
    """A short, non-marketing SMS at noon local to a reachable member is allowed."""
    verdict = evaluate_action(outreach(), make_facts(), POLICY, now=NOON_NY)

    assert ("allow", ["within policy"]) == (verdict.decision, verdict.reasons)


def test_outreach_to_opted_out_member_is_blocked():
    """Opt-out is honoured: outreach to an opted-out member is blocked."""
    assert ("block", None) == _decide(outreach(), make_facts(opted_out=True))


def test_md_approval_does_not_lift_an_opt_out_block():
    """No approval overrides a block."""
    assert ("block", None) == _decide(outreach(), make_facts(opted_out=True), approved_role="md")


def test_outreach_to_deceased_member_is_blocked():
    """Outreach to a member recorded as deceased is blocked."""
    assert ("block", None) == _decide(outreach(), make_facts(deceased=True))


def test_outreach_on_a_channel_without_contact_point_is_blocked():
    """An SMS to a member with no mobile number is blocked."""
    assert ("block", None) == _decide(outreach(channel="sms"), make_facts(channels=("letter",)))


def test_sms_over_160_characters_is_blocked():
    """An SMS longer than 160 characters is blocked."""
    verdict = evaluate_action(outreach("x" * 161), make_facts(), POLICY, now=NOON_NY)

    assert ("block", ["SMS text is 161 characters; the limit is 160"]) == (verdict.decision, verdict.reasons)


def test_sms_of_exactly_160_characters_is_allowed():
    """160 characters is within the SMS limit."""
    assert ("allow", None) == _decide(outreach("x" * 160))


def test_long_letter_is_not_subject_to_the_sms_limit():
    """The 160-character limit applies to SMS only."""
    assert ("allow", None) == _decide(outreach("x" * 400, channel="letter"))


@pytest.mark.parametrize("message", [
    "Great news: a special OFFER on dental coverage for you.",
    "You could upgrade your plan today for more benefits.",
    "Reminder: your premium payment is overdue.",
])
def test_marketing_or_billing_content_is_blocked(message):
    """A message with marketing or billing content is not TCPA-exempt: blocked."""
    assert ("block", None) == _decide(outreach(message))


def test_night_outreach_is_deferred_to_next_morning():
    """An SMS at 21:30 member-local time is deferred to 08:00 the next morning, not sent to approval."""
    verdict = evaluate_action(outreach(), make_facts(), POLICY, now=NIGHT_NY)

    assert ("defer", NEXT_MORNING_NY, None) == (verdict.decision, verdict.defer_until, verdict.required_role)


def test_night_outreach_with_low_confidence_is_deferred_not_sent_to_approval():
    """Deferral comes before approval: nobody is asked to approve a message that could not go out."""
    verdict = evaluate_action(outreach(confidence=0.1), make_facts(), POLICY, now=NIGHT_NY)

    assert ("defer", NEXT_MORNING_NY, None) == (verdict.decision, verdict.defer_until, verdict.required_role)


def test_night_phone_call_is_deferred():
    """Phone calls are bound by the same contact hours as texts."""
    assert ("defer", None) == _decide(outreach(channel="phone"), now=NIGHT_NY)


@pytest.mark.parametrize("channel", ["email", "letter"])
def test_night_email_or_letter_is_not_deferred(channel):
    """Email and letters are not calls or texts: not deferred at night."""
    facts = make_facts(channels=("email", "letter"))

    assert ("allow", None) == _decide(outreach(channel=channel), facts, now=NIGHT_NY)


def test_contact_hours_use_the_member_time_zone():
    """21:30 in New York is 18:30 in Los Angeles: a Pacific member is contacted at once."""
    assert ("allow", None) == _decide(outreach(), make_facts(time_zone="America/Los_Angeles"), now=NIGHT_NY)


def test_night_outreach_to_opted_out_member_is_blocked_not_deferred():
    """Block outranks defer: an opted-out member is never re-scheduled."""
    verdict = evaluate_action(outreach(), make_facts(opted_out=True), POLICY, now=NIGHT_NY)

    assert ("block", None) == (verdict.decision, verdict.defer_until)


def test_without_now_contact_hours_are_not_judged():
    """now=None (re-guarding an edit) skips the contact-hours rule."""
    assert ("allow", None) == _decide(outreach(), now=None)


# --- every verdict names its policy ------------------------------------------

@pytest.mark.parametrize("action", [outreach(), task(), care_plan(), task("reduce-service")])
def test_every_verdict_carries_the_policy_id(action):
    """Each verdict records the exact policy that produced it."""
    verdict = evaluate_action(action, make_facts(), POLICY, now=NOON_NY)

    assert POLICY.policy_id == verdict.policy_id


def test_verdict_under_changed_policy_records_the_new_policy_id():
    """A verdict under a changed threshold records a different policy_id."""
    changed = GuardrailPolicy(high_risk_lace=12)
    verdict = evaluate_action(care_plan(), make_facts(), changed, now=NOON_NY)

    assert changed.policy_id == verdict.policy_id


def test_verdict_records_action_id_and_evaluation_time():
    """The verdict names the action it judged and the (workflow) time of the evaluation."""
    verdict = evaluate_action(task(), make_facts(), POLICY, now=NOON_NY)

    assert ("a2-task", NOON_NY) == (verdict.action_id, verdict.evaluated_at)


# --- check_run ---------------------------------------------------------------

def test_check_run_passes_eligible_discharged_member():
    """An eligible, discharged member has no run-level block."""
    assert None is check_run(make_facts(), POLICY)


def test_check_run_blocks_ineligible_member_naming_the_date():
    """A member whose coverage is not in force is blocked, and the reason names the date."""
    facts = make_facts(inforce=False, reason="no coverage period includes 2024-06-10", on_date=date(2024, 6, 10))
    verdict = check_run(facts, POLICY)

    assert ("block", True, POLICY.policy_id) == (
        verdict.decision, "2024-06-10" in verdict.reasons[0], verdict.policy_id)


def test_check_run_blocks_member_without_discharge():
    """A member still in hospital is blocked: outreach starts after discharge."""
    verdict = check_run(make_facts(discharged_at=None), POLICY)

    assert ("block", ["the stay has no discharge yet; outreach starts after discharge"]) == (
        verdict.decision, verdict.reasons)


def test_check_run_blocks_when_eligibility_errored():
    """An eligibility error blocks the run and passes on the error's reason."""
    facts = make_facts(outcome="error", inforce=False, reason="coverage periods are unreadable")
    verdict = check_run(facts, POLICY)

    assert ("block", ["eligibility could not be determined: coverage periods are unreadable"]) == (
        verdict.decision, verdict.reasons)
