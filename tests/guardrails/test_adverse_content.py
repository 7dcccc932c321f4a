"""The adverse-content classifier (guardrails.adverse_content) on a corpus of phrasings, and the rules that use it.

Issue 21.1: a schema-valid task declared ``service_effect: none`` with the description "Deny continued home
health services; terminate authorization effective today." was allowed with no human. The corpus pins both
sides: adverse phrasings (imperative, passive, nouns, negated sustaining verbs, codes) and phrasings that only
look adverse (negation, the member's own report, a verb whose object is not a service).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from guardrails.actions import ProposedAction
from guardrails.adverse_content import action_effect, classify_text, content_effect, non_adverse_quote
from guardrails.outreach_rules import declared_effect, evaluate_action, service_effect
from guardrails.policy import GuardrailPolicy
from tests.guardrails.run_facts import DISCHARGED, make_facts
from tools.care_plan import CarePlanActivity, DraftCarePlanArgs, GoalSpec
from tools.determination import IssueDeterminationArgs, ItemDecision
from tools.outreach import SendOutreachArgs
from tools.tasks import CreateTaskArgs
from tools.writes import most_adverse

POLICY = GuardrailPolicy()
ISSUE_TEXT = "Deny continued home health services; terminate authorization effective today."

ADVERSE: list[tuple[str, str]] = [
    (ISSUE_TEXT, "terminates"),
    ("Reduce PT visits to one per week", "reduces"),
    ("Hold further skilled nursing", "delays"),
    ("Discontinue home health nursing visits and stop home oxygen therapy", "terminates"),
    ("Home health services will end Friday.", "terminates"),
    ("Coverage ends on 2026-03-01.", "terminates"),
    ("Home health is not medically necessary.", "denies"),
    ("The plan will no longer cover home health.", "terminates"),
    ("The member was denied home health services.", "denies"),
    ("Termination of the authorization for skilled nursing", "terminates"),
    ("Suspend DME delivery", "delays"),
    ("Cut back home health aide hours", "reduces"),
    ("Delay the follow-up visit by two weeks", "delays"),
    ("Withhold authorization pending records", "denies"),
    ("Revoke the prior auth", "terminates"),
    ("Cancel the home health referral", "terminates"),
    ("Review whether to reduce PT visits", "reduces"),  # a hedge about cutting a service is for a clinician too
    ("Services are not covered after today", "denies"),
    ("Request not approved", "denies"),
    ("Do not continue home health services", "terminates"),
    ("Decrease nursing visits to twice a month", "reduces"),
    ("Place home health on hold", "delays"),
    ("Member's home health was discontinued by the plan", "terminates"),
    ("no denial, terminate the authorization", "terminates"),  # the negation ends at the comma
    ("No change to PT but reduce OT visits", "reduces"),  # ... and at "but"
    ("DENY CONTINUED HOME-HEALTH SERVICES", "denies"),
    # Review of issue 21: what the history rule (past reports are not intent) must NOT excuse.
    ("PT visits will be discontinued after 6 weeks.", "terminates"),  # future: intent
    ("Your PT was discontinued after 6 weeks.", "terminates"),  # addressed to the member: a notice
    ("Home health was stopped due to pain.", "terminates"),  # coverage, not a treatment
    ("Conservative PT was discontinued by the health plan.", "terminates"),  # by the plan
    ("Physical therapy is discontinued effective today.", "terminates"),  # present: a decision now
    ("Home health services end only Friday.", "terminates"),  # "only" without a condition
    ("Deny, as of today, all home health visits.", "denies"),  # an aside after the verb
    ("Home health: reduce to weekly.", "reduces"),  # a header
    ("D/C'd home health per plan", "terminates"),
    ("Se deniega la autorizaci\u00f3n de terapia.", "denies"),
    ("De\u00adny home health services.", "denies"),  # a soft hyphen (format character) inside the verb
]

NOT_ADVERSE: list[str] = [
    "no denial",
    "continue services",
    "do not discontinue home health",
    "review whether to continue",
    "the member denies chest pain",
    "Pt denies falls or dizziness",
    "Patient declined home health services",  # the member's own choice, not the plan's
    "Call the member to confirm home health services continue; no denial or reduction of services is planned",
    "Continue home health rather than reduce visits",
    "Avoid delays in care",
    "Schedule the visit without delay",
    "Reduce readmission risk with early follow-up",
    "Reduce care gaps",
    "Stop smoking to improve care",
    "Hold metformin for 48 hours after contrast",
    "By the end of the week, confirm home health services",
    "End-stage renal disease on dialysis: confirm dialysis schedule",
    "Member discharged from SNF to home",
    "No prior authorization needed for home health",
    "Review and close the post-discharge care-management episode",
    # The texts careloom itself writes (offline rules, templates, follow-ups) must stay clean.
    "Interactive post-discharge contact (TCM): call the member, review medications and confirm the follow-up visit",
    "Your health plan care team is checking in after your recent hospital stay. Reply or call the number on your "
    "member card if you need help.",
    "Face-to-face follow-up visit within 7 days",
    "Reconcile discharge medications with the member's list",
    "No readmission within 30 days",
    "Daily weight and symptom check for heart failure",
    "Every criterion of the medical policy is met with cited evidence.",
    "Approval a1-task.0 (create_task) expired unanswered; review the run and decide by hand",
    # Review of issue 21: history, scheduling and places that are not an intent to cut a service.
    "Approve: criteria met; conservative PT was discontinued after 6 weeks without relief.",
    "Member completed 6 weeks of PT; PT was then discontinued due to pain.",
    "Reduce ED visits and unplanned admissions",
    "d/c home with home health services",
    "Lower extremity PT evaluation within 7 days",
    "If pain stops, resume PT visits",
    "No more than one call per day",
    "No se cancelan los servicios de salud en el hogar.",
]


@pytest.mark.parametrize(("text", "effect"), ADVERSE)
def test_adverse_phrasings_are_found(text: str, effect: str) -> None:
    """Each adverse phrasing yields a finding, and its most severe effect is the expected one."""
    findings = classify_text(text)

    assert findings, text
    assert effect == most_adverse(*(f.effect for f in findings))


@pytest.mark.parametrize("text", NOT_ADVERSE)
def test_phrasings_that_only_look_adverse_are_not(text: str) -> None:
    """Negated, reported by the member, or acting on something that is not a service: no finding."""
    assert [] == classify_text(text)


def test_a_finding_names_the_field_and_only_the_words_that_make_it() -> None:
    """The reason quotes the verb and its object, never the whole text (which may hold anything)."""
    args = _task(ISSUE_TEXT + " Member Jane Doe, MRN 40017734.")
    judged = content_effect(args)

    assert "terminates" == judged.effect
    assert ['description "deny continued home health" (denies)',
            'description "terminate authorization" (terminates)'] == [f.describe() for f in judged.findings]


def test_codes_from_fixed_vocabularies_are_not_read_as_text() -> None:
    """A task kind, channel or outcome is a code whose effect is declared (ADVERSE_TASK_KINDS, the outcome)."""
    args = _task("Call the member", kind="reduce-service")

    assert ("none", "reduces") == (content_effect(args).effect, action_effect(args))


def test_the_reason_of_a_run_failure_task_is_read_like_any_other_field() -> None:
    """Review of issue 21: the reason of any run-failure-review Task was skipped, on the worker too, so a forged run
    could write "Deny home health services" there with no MD. Now it is read; the worker needs an MD for it."""
    args = _task("The post-discharge outreach run could not go on; review the member and reach them by hand",
                 kind="run-failure-review", reason="Deny continued home health services; terminate authorization")

    assert "terminates" == action_effect(args)


@pytest.mark.parametrize("failure", [
    "ApprovalNotVerified: create_task refused: an action that denies a service needs a signed MD approval",
    "ToolFailed: Deny continued home health services; terminate authorization effective today.",
    "Home health: denied.",
    "withdrawn by adt:GENHOSP (A13 cancel discharge); approval(s) a1 closed unexecuted: confirm with the source",
])
def test_careloom_quotes_a_failure_in_its_follow_up_task_without_adverse_words(failure: str) -> None:
    """careloom's own follow-up quotes the failure through non_adverse_quote: what is not adverse is kept word for
    word (the error type, the tool), an adverse part is replaced by a note, and the Task needs no MD."""
    quoted = non_adverse_quote(failure, 290)
    args = _task("The post-discharge outreach run could not go on; review the member and reach them by hand",
                 kind="run-failure-review", reason=quoted)

    assert ("none", []) == (action_effect(args), classify_text(quoted))
    assert len(quoted) <= 290
    if not classify_text(failure):
        assert failure == quoted
    elif failure.startswith(("ApprovalNotVerified", "ToolFailed")):
        assert quoted.startswith(failure.split(":")[0] + ":"), quoted


# --- the rules: adverse content goes to an MD with dual sign-off, whatever is declared -----------------------

def test_the_issue_task_declared_none_needs_an_md_and_names_the_contradiction() -> None:
    """Before issue 21: allow, 'within policy'. Now: MD, the text's findings and the contradiction as reasons."""
    action = _action(_task(ISSUE_TEXT))
    verdict = evaluate_action(action, make_facts(), POLICY, now=None)

    assert ("require_approval", "md") == (verdict.decision, verdict.required_role)
    assert "terminates" == service_effect(action)
    assert "terminates" in POLICY.approvals.dual_signoff_effects  # so _pending asks for a second approver
    assert any(r.startswith("its text is adverse whatever it declares: description \"deny continued home health\"")
               for r in verdict.reasons), verdict.reasons
    assert "the declared effect (none) contradicts the text (terminates): check what this action really does" \
        in verdict.reasons


def test_a_task_declared_adverse_that_matches_its_text_has_no_contradiction() -> None:
    """A declaration as severe as the text is consistent: the MD reason, no contradiction reason."""
    verdict = evaluate_action(_action(_task(ISSUE_TEXT, service_effect="terminates")), make_facts(), POLICY,
                              now=None)

    assert "md" == verdict.required_role
    assert not any("contradicts" in r for r in verdict.reasons)


def test_a_care_plan_activity_that_discontinues_services_needs_an_md() -> None:
    """Care plans declare no effect; an activity that stops home oxygen is adverse all the same."""
    plan = DraftCarePlanArgs(title="Post-discharge plan",
                             goals=[GoalSpec(description="Follow-up visit within 7 days", due_in_days=7)],
                             activities=[CarePlanActivity(kind="referral", due_in_days=1, description=(
                                 "Discontinue home health nursing visits and stop home oxygen therapy"))])
    verdict = evaluate_action(_action(plan), make_facts(), POLICY, now=None)

    assert ("require_approval", "md") == (verdict.decision, verdict.required_role)
    assert any('activities[0].description "stop home oxygen" (terminates)' in r for r in verdict.reasons)


def test_a_message_that_says_coverage_ends_needs_an_md() -> None:
    """A member message announcing the end of coverage is an adverse notice, not a check-in."""
    message = SendOutreachArgs(channel="letter", template="follow-up-reminder",
                               message="Your home health coverage ends on Friday.")
    verdict = evaluate_action(_action(message), make_facts(), POLICY, now=None)

    assert "md" == verdict.required_role


def test_a_negated_text_stays_within_policy() -> None:
    """'no denial or reduction of services' on a confident TCM task: allowed, as before."""
    text = ("Call the member to confirm home health services continue; no denial or reduction of services is "
            "planned")
    verdict = evaluate_action(_action(_task(text)), make_facts(), POLICY, now=None)

    assert ("allow", ["within policy"]) == (verdict.decision, verdict.reasons)


def test_an_approval_whose_explanation_denies_is_adverse() -> None:
    """A determination's explanation is text too: an 'approve' that says 'deny' is not an approval to automate."""
    args = IssueDeterminationArgs(outcome="approve", explanation="Deny the MRI; criteria not met.",
                                  items=[ItemDecision(sequence=1, code="72148", decision="approved")])

    assert ("none", "denies") == (declared_effect(args), service_effect(_action(args)))


def test_a_planner_may_not_propose_a_run_failure_task() -> None:
    """Its reason is not read as intent, so only careloom may write one: a planner's is blocked."""
    verdict = evaluate_action(_action(_task("Review the member", kind="run-failure-review",
                                            reason="deny home health services")), make_facts(), POLICY, now=None)

    assert "block" == verdict.decision


def _task(description: str, *, kind: str = "tcm-interactive-contact", reason: str = "inpatient discharge",
          service_effect: str = "none") -> CreateTaskArgs:
    return CreateTaskArgs(kind=kind, queue="care-management/post-discharge", priority="urgent",
                          description=description, reason=reason, due=DISCHARGED + timedelta(days=2),
                          service_effect=service_effect)


def _action(arguments) -> ProposedAction:  # noqa: ANN001
    return ProposedAction(action_id="a1-action", arguments=arguments, rationale="test", confidence=0.95)
