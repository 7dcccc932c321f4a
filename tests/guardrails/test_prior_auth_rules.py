"""Tests for guardrails.prior_auth_rules: evaluate_determination on hand-built prior-authorization facts.

No automated adverse determinations: a deny, partial or pend goes to an MD whatever the confidence; only an
approval with every criterion met runs alone, and only where the run's policy and the service's medical policy
both allow it. The facts are the real models (an evidence review of one lumbar-spine MRI line, built by hand).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from agents.prior_auth_state import PriorAuthFacts
from guardrails.actions import ProposedAction
from guardrails.prior_auth_policy import PriorAuthPolicy
from guardrails.prior_auth_rules import evaluate_determination
from tests.guardrails.run_facts import make_facts
from tools.determination import IssueDeterminationArgs, ItemDecision
from tools.eligibility import EligibilityResult
from tools.evidence import Citation
from tools.evidence_review import CriterionResult, EvidenceReview, PolicyReview, ReviewedLine
from tools.tasks import CreateTaskArgs

POLICY = PriorAuthPolicy()
MRI = "72148"
THERAPY = "conservative-therapy-6-weeks"
DEFICIT = "neurological-deficit-or-failed-therapy"
ADVERSE = "a {outcome} {effect} the member's services: a physician (md) decides, the agent only recommends"
ALL_SENT = "the plan's policy sends every approval to a reviewer"


def _criterion(criterion_id: str, met: bool) -> CriterionResult:
    citations = [Citation(document_id="note-1", start=10, end=36, term="6 weeks of physical therapy")] if met else []
    return CriterionResult(criterion_id=criterion_id, status="met" if met else "not_met", citations=citations,
                           description=f"criterion {criterion_id}")


def make_pa_facts(*, therapy_met: bool = True, deficit_met: bool = True, auto_approve_when_met: bool = True,
                  inforce: bool = True, notes_incomplete: int = 0, lines: tuple[int, ...] = (1,)) -> PriorAuthFacts:
    """One lumbar-spine MRI request (line 1, CPT 72148) reviewed against its two criteria."""
    review = EvidenceReview(
        criteria_version="um-medical-policy@2026.1+sha256:0000000000", notes_read=1,
        notes_incomplete=notes_incomplete,
        policies=[PolicyReview(policy_id="lumbar-spine-mri", title="MRI of the lumbar spine",
                               auto_approve_when_met=auto_approve_when_met, codes=[MRI],
                               criteria=[_criterion(THERAPY, therapy_met), _criterion(DEFICIT, deficit_met)])],
        lines=[ReviewedLine(sequence=s, code=MRI, quantity=1) for s in lines],
    )
    eligibility = EligibilityResult(member_id="pt-guard-1", on_date=date(2026, 3, 2), outcome="complete",
                                    inforce=inforce, plan_type="medicare_advantage" if inforce else None,
                                    reason=None if inforce else "coverage ended")
    return PriorAuthFacts(member=make_facts().member, eligibility=eligibility, review=review)


def determination(outcome: str = "approve", *, confidence: float = 0.95, review_reasons: tuple[str, ...] = (),
                  **fields: Any) -> ProposedAction:
    decision = {"approve": "approved", "deny": "denied", "pend": "pended"}.get(outcome)
    values: dict[str, Any] = {
        "outcome": outcome, "explanation": "Every criterion is met with cited evidence.",
        "items": [ItemDecision(sequence=1, code=MRI, decision=decision)] if decision else [],
        "criteria_cited": [THERAPY, DEFICIT] if outcome == "approve" else [],
    }
    if outcome == "deny":
        values |= {"reason_codes": ["criteria-not-met"], "criteria_cited": [DEFICIT],
                   "explanation": "No neurological deficit documented."}
    if outcome == "pend":
        values |= {"requested_documentation": [DEFICIT], "explanation": "Please document the examination."}
    return ProposedAction(action_id="d1-determination", rationale="triage", confidence=confidence,
                          arguments=IssueDeterminationArgs(**(values | fields)), review_reasons=list(review_reasons))


def _judge(action: ProposedAction, facts: PriorAuthFacts | None = None, policy: PriorAuthPolicy = POLICY,
           **kwargs: Any) -> tuple[str, str | None]:
    verdict = evaluate_determination(action, facts or make_pa_facts(), policy, **kwargs)
    return verdict.decision, verdict.required_role


# --- approve / deny / pend routing --------------------------------------------------------

def test_an_approval_with_every_criterion_met_runs_alone() -> None:
    """approve, every criterion met and cited, coverage in force, confident: allowed with no human."""
    verdict = evaluate_determination(determination(), make_pa_facts(), POLICY)

    assert ("allow", None, ["approval with every criterion met and cited; automatic approval allowed"],
            POLICY.policy_id) == (verdict.decision, verdict.required_role, verdict.reasons, verdict.policy_id)


@pytest.mark.parametrize(("outcome", "effect"), [("deny", "denies"), ("pend", "delays")])
def test_an_adverse_determination_needs_an_md_even_at_full_confidence(outcome: str, effect: str) -> None:
    """A deny or a pend is only a recommendation: an MD decides it, even at confidence 1.0."""
    verdict = evaluate_determination(determination(outcome, confidence=1.0),
                                     make_pa_facts(deficit_met=False), POLICY)

    assert ("require_approval", "md", [ADVERSE.format(outcome=outcome, effect=effect)]) == (
        verdict.decision, verdict.required_role, verdict.reasons)


def test_a_partial_approval_reduces_services_and_needs_an_md() -> None:
    """A partial (one line approved, one denied) reduces services: MD."""
    action = determination("partial", items=[ItemDecision(sequence=1, code=MRI, decision="approved"),
                                             ItemDecision(sequence=2, code=MRI, decision="denied")],
                           reason_codes=["criteria-not-met"], criteria_cited=[DEFICIT],
                           explanation="One of two studies is not supported.")
    verdict = evaluate_determination(action, make_pa_facts(deficit_met=False, lines=(1, 2)), POLICY)

    assert ("require_approval", "md", [ADVERSE.format(outcome="partial", effect="reduces")]) == (
        verdict.decision, verdict.required_role, verdict.reasons)


def test_an_rn_approval_does_not_release_a_denial() -> None:
    """An RN's approval of a denial leaves it requiring an MD; an MD's releases it, naming the approval."""
    facts = make_pa_facts(deficit_met=False)
    action = determination("deny")

    assert ("require_approval", "md") == _judge(action, facts, approved_role="rn")
    verdict = evaluate_determination(action, facts, POLICY, approved_role="md")
    assert ("allow", [f"approved by md: {ADVERSE.format(outcome='deny', effect='denies')}"]) == (
        verdict.decision, verdict.reasons)


def test_a_pend_asks_the_adverse_approver_named_by_the_policy() -> None:
    """The adverse approver is the policy's: a pend asks for whatever role adverse_approver names."""
    policy = PriorAuthPolicy(adverse_approver="rn")

    assert ("require_approval", "rn") == _judge(determination("pend"), make_pa_facts(deficit_met=False), policy)


# --- what the determination cites --------------------------------------------------------

def test_a_denial_on_a_criterion_the_notes_show_as_met_is_flagged() -> None:
    """Denying on a criterion documented as met adds that reason for the MD."""
    verdict = evaluate_determination(determination("deny"), make_pa_facts(), POLICY)

    assert f"the determination denies on criterion '{DEFICIT}', which the notes document as met" in verdict.reasons
    assert ("require_approval", "md") == (verdict.decision, verdict.required_role)


def test_a_partial_on_a_criterion_the_notes_show_as_met_is_flagged() -> None:
    """A partial approval resting on a met criterion is flagged like a denial."""
    action = determination("partial", items=[ItemDecision(sequence=1, code=MRI, decision="approved"),
                                             ItemDecision(sequence=2, code=MRI, decision="denied")],
                           reason_codes=["criteria-not-met"], criteria_cited=[THERAPY],
                           explanation="One of two studies is not supported.")
    verdict = evaluate_determination(action, make_pa_facts(deficit_met=False, lines=(1, 2)), POLICY)

    assert [ADVERSE.format(outcome="partial", effect="reduces"),
            f"the determination denies on criterion '{THERAPY}', which the notes document as met"] == verdict.reasons


def test_an_approval_citing_met_criteria_is_not_flagged_as_denying_on_them() -> None:
    """Citing met criteria is what an approval should do: no 'denies on' reason."""
    verdict = evaluate_determination(determination(confidence=0.5), make_pa_facts(), POLICY)

    assert [] == [r for r in verdict.reasons if "denies on criterion" in r]


def test_citing_an_unknown_criterion_sends_an_approval_to_an_md() -> None:
    """An approval citing a criterion the medical policy does not have is not automatic: MD."""
    verdict = evaluate_determination(determination(criteria_cited=[THERAPY, "made-up-criterion"]),
                                     make_pa_facts(), POLICY)

    assert ("require_approval", "md", ["the determination cites criterion 'made-up-criterion', which the "
                                       "medical policy does not have"]) == (
        verdict.decision, verdict.required_role, verdict.reasons)


def test_deciding_other_lines_than_requested_sends_an_approval_to_an_md() -> None:
    """An approval that decides line 1 of a two-line request is not automatic: MD, naming the lines."""
    verdict = evaluate_determination(determination(), make_pa_facts(lines=(1, 2)), POLICY)

    assert ("require_approval", "md") == (verdict.decision, verdict.required_role)
    assert [f"the determination decides lines [(1, '{MRI}')] but the request has [(1, '{MRI}'), (2, '{MRI}')]"] \
        == verdict.reasons


# --- adverse text in an approval -----------------------------------------------------------

def test_an_approval_whose_explanation_denies_needs_an_md() -> None:
    """An 'approve' whose explanation says 'deny' is adverse by its text: an MD decides, never automatic."""
    action = determination(explanation="Deny the MRI; criteria not met.")
    verdict = evaluate_determination(action, make_pa_facts(), POLICY)

    assert ("require_approval", "md", [ADVERSE.format(outcome="approve", effect="denies")]) == (
        verdict.decision, verdict.required_role, verdict.reasons)
    assert ("require_approval", "md") == _judge(action, approved_role="rn")


def test_an_approval_whose_explanation_negates_a_denial_stays_automatic() -> None:
    """'no denial of services' is not adverse: the approval still runs alone."""
    action = determination(explanation="All criteria met; no denial or reduction of services.")

    assert ("allow", None) == _judge(action)


# --- approvals that may not run alone ---------------------------------------------------------

def test_an_approval_with_a_criterion_not_met_needs_a_reviewer() -> None:
    """An approval although a criterion is not met goes to the approval reviewer (RN), naming the criterion."""
    verdict = evaluate_determination(determination(criteria_cited=[THERAPY]), make_pa_facts(deficit_met=False),
                                     POLICY)

    assert ("require_approval", "rn", [f"approval with criteria not met: {DEFICIT}"]) == (
        verdict.decision, verdict.required_role, verdict.reasons)


def test_an_approval_for_a_member_without_coverage_needs_an_md() -> None:
    """Coverage not in force on the service date: the approval goes to the adverse approver (MD)."""
    verdict = evaluate_determination(determination(), make_pa_facts(inforce=False), POLICY)

    assert ("require_approval", "md", ["approval for a member whose coverage is not in force"]) == (
        verdict.decision, verdict.required_role, verdict.reasons)


def test_the_auto_approve_switch_sends_every_approval_to_a_reviewer() -> None:
    """auto_approve=False: even a fully met approval awaits the approval reviewer; True (default) runs alone."""
    policy = PriorAuthPolicy(auto_approve=False)
    verdict = evaluate_determination(determination(), make_pa_facts(), policy)

    assert ("require_approval", "rn", [ALL_SENT], policy.policy_id) == (
        verdict.decision, verdict.required_role, verdict.reasons, verdict.policy_id)
    assert ("allow", None) == _judge(determination(), policy=PriorAuthPolicy(auto_approve=True))
    assert policy.policy_id != POLICY.policy_id


def test_the_approval_reviewer_role_comes_from_the_policy() -> None:
    """approval_reviewer=md: an approval that may not run alone waits for an MD."""
    assert ("require_approval", "md") == _judge(determination(),
                                                policy=PriorAuthPolicy(auto_approve=False, approval_reviewer="md"))


def test_a_medical_policy_without_automatic_approval_needs_a_reviewer() -> None:
    """A service whose medical policy forbids automatic approval is reviewed even when every criterion is met."""
    verdict = evaluate_determination(determination(), make_pa_facts(auto_approve_when_met=False), POLICY)

    assert ("require_approval", "rn", ["medical policy lumbar-spine-mri allows no automatic approval"]) == (
        verdict.decision, verdict.required_role, verdict.reasons)


def test_notes_not_fully_read_send_an_approval_to_a_reviewer() -> None:
    """A note read only in part may hold contrary evidence: the approval is reviewed."""
    verdict = evaluate_determination(determination(), make_pa_facts(notes_incomplete=2), POLICY)

    assert ("require_approval", "rn") == (verdict.decision, verdict.required_role)
    assert verdict.reasons[0].startswith("2 clinical note(s) not fully read within the time budget")


# --- confidence -------------------------------------------------------------------------

@pytest.mark.parametrize(("confidence", "expected"), [
    (0.74, ("require_approval", "rn")), (0.75, ("allow", None)), (0.99, ("allow", None))])
def test_confidence_threshold_is_the_policys_minimum(confidence: float, expected: tuple[str, str | None]) -> None:
    """Below min_confidence (0.75) an approval goes to a reviewer; at or above it runs alone."""
    assert expected == _judge(determination(confidence=confidence))


def test_a_low_confidence_reason_names_both_numbers() -> None:
    """The reason records the confidence and the threshold it missed."""
    verdict = evaluate_determination(determination(confidence=0.5), make_pa_facts(), POLICY)

    assert ["confidence 0.50 below 0.75"] == verdict.reasons


def test_a_raised_threshold_routes_a_confident_approval() -> None:
    """With min_confidence 0.97 an approval at 0.95 needs a reviewer."""
    assert ("require_approval", "rn") == _judge(determination(confidence=0.95),
                                                policy=PriorAuthPolicy(min_confidence=0.97))


def test_a_low_confidence_denial_still_needs_only_the_md() -> None:
    """Low confidence adds an RN reason to a denial; the most senior role (MD) is required, every reason kept."""
    verdict = evaluate_determination(determination("deny", confidence=0.3), make_pa_facts(deficit_met=False),
                                     POLICY)

    assert ("require_approval", "md", [ADVERSE.format(outcome="deny", effect="denies"),
                                       "confidence 0.30 below 0.75"]) == (
        verdict.decision, verdict.required_role, verdict.reasons)


def test_a_planner_asking_for_review_is_heard() -> None:
    """A review reason from the planner sends even a perfect approval to the reviewer."""
    verdict = evaluate_determination(determination(review_reasons=("model answer unusable",)), make_pa_facts(),
                                     POLICY)

    assert ("require_approval", "rn", ["planner asks for review: model answer unusable"]) == (
        verdict.decision, verdict.required_role, verdict.reasons)


def test_an_rn_approval_releases_what_needs_an_rn() -> None:
    """Approved by an RN, a low-confidence approval is allowed and the reason records the approval."""
    verdict = evaluate_determination(determination(confidence=0.5), make_pa_facts(), POLICY, approved_role="rn")

    assert ("allow", ["approved by rn: confidence 0.50 below 0.75"]) == (verdict.decision, verdict.reasons)


def test_a_care_coordinator_approval_does_not_release_what_needs_an_rn() -> None:
    """A care coordinator ranks below the RN reviewer: still require_approval (rn)."""
    assert ("require_approval", "rn") == _judge(determination(confidence=0.5), approved_role="care_coordinator")


# --- anything else ------------------------------------------------------------------------

def test_a_follow_up_task_is_allowed() -> None:
    """The only other action (an expired approval's follow-up Task) is allowed within policy."""
    action = ProposedAction(action_id="d1-determination-follow-up", rationale="expired", confidence=1.0,
                            arguments=CreateTaskArgs(kind="expired-approval-review", queue="um-medical-review",
                                                     priority="urgent", description="review by hand",
                                                     reason="SLA chain exhausted",
                                                     due=datetime(2026, 3, 9, tzinfo=UTC)))
    verdict = evaluate_determination(action, make_pa_facts(), POLICY)

    assert ("allow", ["within policy"]) == (verdict.decision, verdict.reasons)


@pytest.mark.parametrize(("kind", "description", "effect"), [
    ("reduce-service", "review the home health plan", "reduces"),
    ("follow-up-visit", "Deny continued home health services; terminate authorization effective today.",
     "terminates"),
])
def test_an_adverse_task_in_a_prior_auth_run_needs_an_md(kind: str, description: str, effect: str) -> None:
    """A Task that is not careloom's follow-up (e.g. from a forged recommender result) is judged by what it does:
    an adverse one needs the physician, and only a physician's approval releases it."""
    action = ProposedAction(action_id="d2-task", rationale="forged", confidence=1.0,
                            arguments=CreateTaskArgs(kind=kind, queue="um-medical-review", priority="urgent",
                                                     description=description, reason="member request",
                                                     due=datetime(2026, 3, 9, tzinfo=UTC)))
    verdict = evaluate_determination(action, make_pa_facts(), POLICY)
    assert ("require_approval", "md") == (verdict.decision, verdict.required_role)
    assert effect in verdict.reasons[0]
    assert "require_approval" == evaluate_determination(action, make_pa_facts(), POLICY,
                                                        approved_role="rn").decision
    assert "allow" == evaluate_determination(action, make_pa_facts(), POLICY, approved_role="md").decision
