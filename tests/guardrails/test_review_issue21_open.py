"""Review of issue 21: open findings, each an xfail(strict) test that passes once the finding is fixed.

Pure guardrail functions on typed inputs (no server): the adverse-content classifier, the PHI check and plan
completeness, with the schema-valid texts and plans a model can write.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents.offline_planner import OfflinePlanner
from agents.planner import PlannerInput
from guardrails.adverse_content import classify_text
from guardrails.outreach_rules import evaluate_action
from guardrails.phi_text import member_identifiers, phi_in_text
from guardrails.plan_completeness import complete_plan
from guardrails.policy import GuardrailPolicy
from tests.guardrails.run_facts import make_facts, scored_risk
from tools.outreach import SendOutreachArgs

# Adverse statements a planner can write that the classifier misses (each is how a person says it).
MISSED_ADVERSE = [
    # a comma or a colon splits the clause, so the verb never meets its object
    "Terminate, effective today, the home health authorization.",
    "Home health services: terminate.",
    "Home health: denied.",
    # more than five words between the verb and the service
    "Deny all of the requested continued home health services.",
    # paraphrases without a listed verb
    "Your home health authorization will lapse on Friday.",
    "No further visits will be approved.",
    "There will be no more home health visits after Friday.",
    "Let the home health authorization expire.",
    "Remove home health from the care plan.",
    "Taper PT visits to zero.",
    "Lower home health frequency to once weekly.",
    # clinical shorthand
    "d/c home health",
    "Stop all HH",
    # another language (members and coordinators write Spanish): a minimal Spanish vocabulary
    "Se cancelan los servicios de salud en el hogar.",
    # invisible or compatibility characters a reader never sees (no NFKC, no removal of format characters)
    "De\u200bny home health services.",
    "\uff24\uff45\uff4e\uff59 home health services.",
]


@pytest.mark.parametrize("text", MISSED_ADVERSE)
def test_adverse_paraphrases_are_findings(text: str) -> None:
    assert classify_text(text), f"not flagged: {text!r}"


# Harmless texts the classifier flags: each sends the action to an MD with dual sign-off. The first two are how
# a prior-auth APPROVE cites its evidence (failed conservative therapy), so an approval needs two physicians.
FALSE_ADVERSE = [
    "Approve: criteria met; conservative PT was discontinued after 6 weeks without relief.",
    "Approve. Member failed 6 weeks of physical therapy; therapy stopped due to pain.",
    "Check the member's coverage end date.",
    "Follow-up appointment was cancelled; reschedule within 7 days.",
    "Ensure visits end only when goals are met.",
]


@pytest.mark.parametrize("text", FALSE_ADVERSE)
def test_history_and_scheduling_are_not_findings(text: str) -> None:
    assert not classify_text(text), [f.describe() for f in classify_text(text)]


PATIENT = {
    "resourceType": "Patient", "id": "mbr-review-21",
    "name": [{"family": "O'Brien-Vrellquist", "given": ["José"]}], "birthDate": "1941-07-04",
    "telecom": [{"system": "phone", "value": "(415) 555-0134"}],
    "address": [{"line": ["123 Canaryfield Street"], "state": "CA", "postalCode": "94103-1234"}],
}


@pytest.mark.parametrize("text", [
    "Hi Jose, checking in after your stay.",              # accent dropped
    "Mr O'Brien, please call us back.",                   # one half of a hyphenated surname
    "We will visit you at 123 Canaryfield St.",           # the usual street abbreviation
    "Birthday 4 Jul 41 on file.",                         # day-first, two-digit year
    "SSN 123 45 6789",                                    # spaces instead of hyphens
    "Hi Jos\u200b\u00e9, checking in.",                      # a zero-width space inside the name
])
def test_member_identifiers_in_other_spellings_are_found(text: str) -> None:
    assert phi_in_text(text, member_identifiers(PATIENT))


def test_a_check_in_that_will_be_blocked_does_not_count() -> None:
    facts = make_facts(risk=scored_risk(los=4, ed=4))
    reference = OfflinePlanner().propose(PlannerInput(workflow_id="wf", facts=facts, high_risk_lace=10))
    check_in = next(p for p in reference if isinstance(p.arguments, SendOutreachArgs))
    too_long = check_in.model_copy(update={"action_id": "a2-send-outreach", "arguments": SendOutreachArgs(
        channel="sms", template="post-discharge-check-in", message="How are you feeling? " * 12)})
    plan = [too_long if p is check_in else p for p in reference]
    completed = complete_plan(plan, reference, facts, high_risk_lace=10, planner="model:m")
    now = datetime(2024, 6, 10, 16, 0, tzinfo=UTC)  # 12:00 in the member's zone: the window is open

    decisions = [evaluate_action(p, facts, GuardrailPolicy(), now=now).decision for p in completed.proposals
                 if isinstance(p.arguments, SendOutreachArgs)]
    assert any(d != "block" for d in decisions), f"every check-in is blocked: {decisions}"
