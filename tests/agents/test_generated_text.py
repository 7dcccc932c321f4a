"""agents.generated_text.withhold_phi: what replaces model text that identifies the member, for each action kind."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents.generated_text import WITHHELD_RATIONALE, WITHHELD_TEXT, PhiNotWithheld, withhold_phi
from agents.offline_planner import CHECK_IN_MESSAGE
from guardrails.actions import ProposedAction
from guardrails.phi_text import MemberIdentifiers
from tools.care_plan import CarePlanActivity, DraftCarePlanArgs, GoalSpec
from tools.outreach import SendOutreachArgs
from tools.tasks import CreateTaskArgs

MEMBER = MemberIdentifiers(names=("Ozymandra", "Vrellquist"), identifiers=("MRN-CNRY-55213",))
DUE = datetime(2026, 3, 5, 17, tzinfo=UTC)


def _proposal(arguments, rationale: str = "Preferred channel is sms.") -> ProposedAction:  # noqa: ANN001
    return ProposedAction(action_id="a1-x", arguments=arguments, rationale=rationale, confidence=0.8)


def _task(kind: str = "tcm-interactive-contact", **changes: str) -> CreateTaskArgs:
    return CreateTaskArgs(**{"kind": kind, "queue": "care-management/post-discharge", "priority": "urgent",
                             "description": "Call the member", "reason": "inpatient discharge", "due": DUE,
                             **changes})


def test_clean_text_is_left_as_it_is() -> None:
    """Nothing found: the same proposal, no reason added."""
    proposal = _proposal(SendOutreachArgs(channel="sms", template="follow-up-reminder", message="See you soon."))
    assert (proposal, []) == withhold_phi(proposal, MEMBER, None, CHECK_IN_MESSAGE)


def test_a_message_gets_the_approved_check_in_text_and_template() -> None:
    """Whatever template the model named, the approved check-in text under its own template name."""
    out, found = withhold_phi(_proposal(SendOutreachArgs(channel="sms", template="follow-up-reminder",
                                                         message="Hi Ozymandra!")), MEMBER, None, CHECK_IN_MESSAGE)
    assert ("post-discharge-check-in", CHECK_IN_MESSAGE) == (out.arguments.template, out.arguments.message)
    assert ["the member's name"] == found
    assert ["model text contained the member's name; replaced by the approved template text"] == out.review_reasons


def test_a_task_keeps_its_structure_and_takes_the_rules_text_where_it_identified_someone() -> None:
    """Kind, queue, priority and due stay the model's (the guardrails judge them); only the description changes."""
    template = _proposal(_task(description="Interactive post-discharge contact (TCM)"), rationale="TCM rule.")
    out, _ = withhold_phi(_proposal(_task(description="Call Vrellquist"), rationale="Ozymandra needs a call."),
                          MEMBER, template, CHECK_IN_MESSAGE)
    assert "Interactive post-discharge contact (TCM)" == out.arguments.description
    assert ("urgent", "inpatient discharge", DUE) == (out.arguments.priority, out.arguments.reason, out.arguments.due)
    assert "TCM rule." == out.rationale


def test_a_task_the_rules_never_make_has_its_text_withheld() -> None:
    """No approved text for the kind: the identifying text becomes the withheld sentence, the rest stays."""
    out, _ = withhold_phi(_proposal(_task(kind="outreach-follow-up", reason="MRN-CNRY-55213 asked"),
                                    rationale="Vrellquist asked."), MEMBER, None, CHECK_IN_MESSAGE)
    assert (WITHHELD_TEXT, "Call the member", WITHHELD_RATIONALE) == (
        out.arguments.reason, out.arguments.description, out.rationale)
    assert out.review_reasons[0].endswith("withheld (no approved template for this action)")


def test_a_care_plan_is_replaced_by_the_rules_whole_plan() -> None:
    """Goals and activities are lists: the rules' plan is the approved text."""
    rules = DraftCarePlanArgs(title="Post-discharge transitional care plan",
                              goals=[GoalSpec(description="Attend a follow-up visit", due_in_days=7)])
    leaky = DraftCarePlanArgs(title="Plan", goals=[GoalSpec(description="Visit", due_in_days=7)],
                              activities=[CarePlanActivity(kind="monitoring", description="Ozymandra's weight")])
    out, _ = withhold_phi(_proposal(leaky), MEMBER, _proposal(rules), CHECK_IN_MESSAGE)
    assert rules == out.arguments


def test_identifiers_outside_the_free_text_fields_without_a_rule_refuse_the_plan() -> None:
    """A queue naming the member, no rule for that task: the plan cannot be kept (the planner falls back)."""
    with pytest.raises(PhiNotWithheld, match="the member's name outside the free-text fields"):
        withhold_phi(_proposal(_task(kind="outreach-follow-up", queue="care-management/vrellquist")), MEMBER, None,
                     CHECK_IN_MESSAGE)


def _determination(outcome: str = "approve", explanation: str = "Every criterion is met.",
                   rationale: str = "All met.", **changes: object) -> ProposedAction:
    from tools.determination import IssueDeterminationArgs

    decision = {"approve": "approved", "deny": "denied"}[outcome]
    adverse = {"reason_codes": ["criteria-not-met"], "criteria_cited": ["c-1"]} if outcome == "deny" else {}
    args = IssueDeterminationArgs(outcome=outcome, items=[{"sequence": 1, "code": "72148", "decision": decision}],
                                  explanation=explanation, **{**adverse, **changes})
    return ProposedAction(action_id="d1-determination", arguments=args, rationale=rationale, confidence=0.9)


def test_a_determination_explanation_naming_the_member_takes_the_rules_text() -> None:
    """Same outcome as the rules: their explanation and rationale; the reason names kinds, not values."""
    from agents.generated_text import withhold_determination_phi

    offline = _determination(explanation="Every criterion is met with cited evidence.", rationale="Rules: all met.")
    out, found = withhold_determination_phi(
        _determination(explanation="Approved for Ozymandra.", rationale="Vrellquist qualifies."), MEMBER, offline)
    assert ("Every criterion is met with cited evidence.", "Rules: all met.") == (out.arguments.explanation,
                                                                                 out.rationale)
    assert ["the member's name"] == found
    assert ["model text contained the member's name; replaced by the offline rules' text"] == out.review_reasons


def test_a_determination_the_rules_disagree_with_gets_the_neutral_sentence() -> None:
    """The rules approve, the model denies naming the member: the rules' approval text would argue the other way."""
    from agents.generated_text import WITHHELD_EXPLANATION, withhold_determination_phi

    out, _ = withhold_determination_phi(_determination("deny", explanation="Ozymandra does not qualify."), MEMBER,
                                        _determination())
    assert (WITHHELD_EXPLANATION, "deny", "All met.") == (out.arguments.explanation, out.arguments.outcome,
                                                          out.rationale)
    assert "withheld (the offline rules recommend another outcome)" in out.review_reasons[0]


def test_a_reason_code_naming_the_member_is_not_withheld_but_refused() -> None:
    """No approved text stands in for a code: the planner refuses the model's recommendation."""
    from agents.generated_text import withhold_determination_phi

    with pytest.raises(PhiNotWithheld, match="the member's name outside the free-text fields"):
        withhold_determination_phi(_determination("deny", reason_codes=["criteria-not-met", "vrellquist-o"]), MEMBER,
                                   _determination())
    clean = _determination()
    assert (clean, []) == withhold_determination_phi(clean, MEMBER, _determination())
