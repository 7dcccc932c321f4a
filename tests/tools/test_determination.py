"""Tests for tools.determination: a prior-authorization determination written once as a FHIR ClaimResponse."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.claimresponse import ClaimResponse
from fhir.resources.R4B.task import Task
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from store.fhir_validation import validate_resource
from tests.pas_factory import make_pas_request
from tools.criteria import criteria_version_id, load_criteria
from tools.determination import (
    REASON_SYSTEM,
    REVIEW_ACTION_EXTENSION,
    REVIEW_ACTION_SYSTEM,
    IssueDeterminationArgs,
    ItemDecision,
    WriteDeterminationInput,
    service_effect,
    write_claim_response,
)
from tools.pas_request import parse_pas_bundle, save_submission, scoped_id

DECIDED = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
VERSION = criteria_version_id(load_criteria())


def _saved_request(store, **options):
    request = make_pas_request(store, **options)
    save_submission(store, request.bundle, parse_pas_bundle(request.bundle))
    return request


def _args(outcome="approve", decisions=("approved",), codes=("72148",), quantities=None, **fields):
    quantities = quantities or [None] * len(decisions)
    defaults = {
        "approve": {},
        "deny": {"reason_codes": ["criteria-not-met"], "criteria_cited": ["conservative-therapy-6-weeks"]},
        "partial": {"reason_codes": ["quantity-exceeds-policy"], "criteria_cited": ["skilled-need"]},
        "pend": {"requested_documentation": ["conservative-therapy-6-weeks"]},
    }[outcome]
    return IssueDeterminationArgs(
        outcome=outcome, explanation="Decided on the documented criteria.",
        items=[ItemDecision(sequence=n, code=code, decision=d, approved_quantity=q)
               for n, (code, d, q) in enumerate(zip(codes, decisions, quantities, strict=True), start=1)],
        **{**defaults, **fields})


def _input(request, args, key="wf-pa-1#a1-determination", approved_by="dr.rivera") -> WriteDeterminationInput:
    return WriteDeterminationInput(
        claim_id=request.claim_id, member_id=request.member_id, coverage_id=request.coverage_id,
        idempotency_key=key, approved_by=approved_by, arguments=args, decided_at=DECIDED, criteria_version=VERSION)


def _response(store, result):
    return store.get("ClaimResponse", result.reference.split("/")[1])


def _review_actions(response):
    return [(item["itemSequence"], item["adjudication"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"])
            for item in response["item"]]


# --- the ClaimResponse -------------------------------------------------------------------------------------------


def test_claim_response_validates_with_value_sets(store):
    """The ClaimResponse written validates with the project's validator (R4B plus required value sets)."""
    response = _response(store, write_claim_response(store, _input(_saved_request(store), _args())))

    assert response == validate_resource(response)


def test_claim_response_answers_the_claim(store):
    """It is an active preauthorization response to the Claim, for the member, from the coverage's payor."""
    request = _saved_request(store)
    parsed = ClaimResponse.model_validate(_response(store, write_claim_response(store, _input(request, _args()))))

    assert ("active", "preauthorization", f"Claim/{request.claim_id}", f"Patient/{request.member_id}",
            "Organization/payer-x", f"Practitioner/{scoped_id(request.claim_id, request.provider_id)}",
            "professional", DECIDED) == (
        parsed.status, parsed.use, parsed.request.reference, parsed.patient.reference, parsed.insurer.reference,
        parsed.requestor.reference, parsed.type.coding[0].code, parsed.created)


@pytest.mark.parametrize(("outcome", "decisions", "fhir_outcome"), [
    ("approve", ("approved",), "complete"),
    ("deny", ("denied",), "complete"),
    ("partial", ("approved", "denied"), "partial"),
    ("pend", ("pended",), "queued"),
])
def test_outcome_maps_to_the_fhir_outcome(store, outcome, decisions, fhir_outcome):
    """approve and deny are complete, partial is partial, pend is queued."""
    codes = ("G0299", "G0151")[:len(decisions)]
    request = _saved_request(store, service_code=codes[0], extra_codes=codes[1:])
    response = _response(store, write_claim_response(store, _input(request, _args(outcome, decisions, codes))))

    assert fhir_outcome == response["outcome"]


def test_each_item_carries_its_x12_review_action(store):
    """Approved, denied and modified lines carry X12 306 codes A1, A3 and A6 in the PAS reviewActionCode extension."""
    request = _saved_request(store, service_code="G0299", extra_codes=("G0151", "G0300"), quantity=12)
    args = _args("partial", ("approved", "denied", "modified"), ("G0299", "G0151", "G0300"), [None, None, 6])
    response = _response(store, write_claim_response(store, _input(request, args)))
    extension = response["item"][0]["adjudication"][0]["extension"][0]

    assert ([(1, "A1"), (2, "A3"), (3, "A6")], REVIEW_ACTION_EXTENSION,
            REVIEW_ACTION_SYSTEM) == (_review_actions(response), extension["url"],
                                      extension["valueCodeableConcept"]["coding"][0]["system"])


def test_a_pended_item_is_a4(store):
    """A pended line carries X12 306 code A4."""
    request = _saved_request(store)
    response = _response(store, write_claim_response(store, _input(request, _args("pend", ("pended",)))))

    assert [(1, "A4")] == _review_actions(response)


def test_approved_quantities_are_adjudicated(store):
    """An approved line is approved for what was requested, a modified one for its approved quantity."""
    request = _saved_request(store, service_code="G0299", extra_codes=("G0151",), quantity=12)
    args = _args("partial", ("approved", "modified"), ("G0299", "G0151"), [None, 6],
                 reason_codes=["quantity-exceeds-policy"])
    response = _response(store, write_claim_response(store, _input(request, args)))

    assert [[("submitted", 12), ("approved-quantity", 12)], [("submitted", 12), ("approved-quantity", 6)]] == [
        [(a["category"]["coding"][0]["code"], a["value"]) for a in item["adjudication"]] for item in response["item"]]


def test_approval_and_partial_carry_a_pre_auth_ref_and_denial_does_not(store):
    """preAuthRef is issued for approve and partial only, the same for the same key."""
    refs = []
    for outcome, decisions in (("approve", ("approved",)), ("partial", ("approved", "denied")), ("deny", ("denied",))):
        codes = ("G0299", "G0151")[:len(decisions)]
        request = _saved_request(store, service_code=codes[0], extra_codes=codes[1:])
        result = write_claim_response(store, _input(request, _args(outcome, decisions, codes), key=f"k-{outcome}"))
        refs.append(_response(store, result).get("preAuthRef"))

    assert (True, True, None) == (refs[0].startswith("PA-"), refs[1].startswith("PA-"), refs[2])


def test_reasons_are_coded_and_noted(store):
    """Reason codes are CodeableConcepts of careloom's system; notes list them and the criteria with the version."""
    request = _saved_request(store)
    args = _args("deny", ("denied",), reason_codes=["criteria-not-met", "insufficient-documentation"],
                 criteria_cited=["conservative-therapy-6-weeks", "neurological-deficit-or-failed-therapy"])
    response = _response(store, write_claim_response(store, _input(request, args)))

    assert ([(REASON_SYSTEM, "criteria-not-met"), (REASON_SYSTEM, "insufficient-documentation")],
            ["Reasons: criteria-not-met, insufficient-documentation.",
             f"Criteria cited ({VERSION}): conservative-therapy-6-weeks, neurological-deficit-or-failed-therapy.",
             "Reviewed by dr.rivera."]) == (
        [(a["reason"]["coding"][0]["system"], a["reason"]["coding"][0]["code"]) for a in response["adjudication"]],
        [n["text"] for n in response["processNote"]])


def test_disposition_states_the_outcome_and_explanation(store):
    """The disposition is the outcome in words followed by the explanation."""
    response = _response(store, write_claim_response(store, _input(_saved_request(store), _args())))

    assert "Certified in total. Decided on the documented criteria." == response["disposition"]


def test_same_idempotency_key_twice_writes_one_claim_response(store):
    """A retry with the same key returns the same ClaimResponse with created False."""
    request = _saved_request(store)
    first = write_claim_response(store, _input(request, _args()))
    second = write_claim_response(store, _input(request, _args()))

    assert ((first.reference, True), (first.reference, False), 1) == (
        (first.reference, first.created), (second.reference, second.created), store.count("ClaimResponse"))


def test_claim_response_is_indexed_for_its_member(store):
    """The ClaimResponse is found among the member's resources."""
    request = _saved_request(store)
    result = write_claim_response(store, _input(request, _args()))

    assert [result.reference] == [f"ClaimResponse/{r['id']}"
                                  for r in store.find_for_member("ClaimResponse", request.member_id)]


def test_an_approval_that_met_every_criterion_needs_no_reviewer(store):
    """An approve may be written without approved_by (auto-approvable policy); its note says so."""
    request = _saved_request(store)
    response = _response(store, write_claim_response(store, _input(request, _args(), approved_by=None)))

    assert "Met every criterion; not reviewed." == response["processNote"][-1]["text"]


# --- the pend's information request -------------------------------------------------------------------------------


def test_pend_also_writes_an_information_request_task(store):
    """A pend writes a Task for the requesting provider, listing the criteria to document."""
    request = _saved_request(store)
    args = _args("pend", ("pended",), requested_documentation=["conservative-therapy-6-weeks",
                                                               "neurological-examination"])
    result = write_claim_response(store, _input(request, args))
    task = Task.model_validate(store.get("Task", result.related[0].split("/")[1]))

    assert ("requested", "order", "request-additional-information", f"Patient/{request.member_id}",
            f"Practitioner/{scoped_id(request.claim_id, request.provider_id)}", f"Claim/{request.claim_id}",
            result.reference,
            ["conservative-therapy-6-weeks", "neurological-examination"]) == (
        task.status, task.intent, task.code.coding[0].code, task.for_fhir.reference, task.owner.reference,
        task.focus.reference, task.reasonReference.reference,
        [i.valueCodeableConcept.coding[0].code for i in task.input])


def test_pend_retry_returns_both_resources(store):
    """Retrying a pend returns the same ClaimResponse and Task, writing neither again."""
    request = _saved_request(store)
    first = write_claim_response(store, _input(request, _args("pend", ("pended",))))
    second = write_claim_response(store, _input(request, _args("pend", ("pended",))))

    assert ((first.reference, first.related, False), 1, 1) == (
        (second.reference, second.related, second.created), store.count("ClaimResponse"), store.count("Task"))


def test_pend_task_validates(store):
    """The information-request Task validates with the project's validator."""
    request = _saved_request(store)
    result = write_claim_response(store, _input(request, _args("pend", ("pended",))))
    task = store.get("Task", result.related[0].split("/")[1])

    assert task == validate_resource(task)


def test_a_decision_other_than_pend_writes_no_task(store):
    """Approve writes only the ClaimResponse."""
    request = _saved_request(store)

    assert ([], 0) == (write_claim_response(store, _input(request, _args())).related, store.count("Task"))


# --- refusals -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("outcome", "decisions"), [("deny", ("denied",)), ("pend", ("pended",)),
                                                    ("partial", ("approved", "denied"))])
def test_an_adverse_determination_without_a_reviewer_is_refused(store, outcome, decisions):
    """Deny, pend and partial are never written without approved_by, and nothing is written."""
    codes = ("G0299", "G0151")[:len(decisions)]
    request = _saved_request(store, service_code=codes[0], extra_codes=codes[1:])
    with pytest.raises(ApplicationError) as err:
        write_claim_response(store, _input(request, _args(outcome, decisions, codes), approved_by=None))

    assert ("ApprovalRequired", True, 0) == (err.value.type, err.value.non_retryable, store.count("ClaimResponse"))


def test_decisions_must_match_the_claims_lines(store):
    """A determination for lines the Claim does not request is refused, naming both."""
    request = _saved_request(store)
    with pytest.raises(ApplicationError) as err:
        write_claim_response(store, _input(request, _args(codes=("72149",))))

    assert ("DeterminationMismatch", "the determination decides lines {1: '72149'} but Claim/"
            f"{request.claim_id} requests {{1: '72148'}}: decide every requested line once, with its code", 0) == (
        err.value.type, err.value.message, store.count("ClaimResponse"))


def test_an_unknown_claim_is_refused(store):
    """A determination for a Claim never saved is ClaimNotFound."""
    request = make_pas_request(store)
    with pytest.raises(ApplicationError) as err:
        write_claim_response(store, _input(request, _args()))

    assert ("ClaimNotFound", f"no Claim/{request.claim_id} for member {request.member_id!r}: check both ids") == (
        err.value.type, err.value.message)


def test_a_claim_of_another_member_is_refused(store):
    """The Claim must be the member's own."""
    request, other = _saved_request(store), _saved_request(store)
    data = _input(request, _args()).model_copy(update={"member_id": other.member_id})
    with pytest.raises(ApplicationError) as err:
        write_claim_response(store, data)

    assert "ClaimNotFound" == err.value.type


# --- the arguments' rules -------------------------------------------------------------------------------------------


def _refusal(**fields) -> str:
    with pytest.raises(ValidationError) as err:
        IssueDeterminationArgs(**{"explanation": "why it was decided", **fields})
    return err.value.errors()[0]["msg"].removeprefix("Value error, ")


_APPROVED = [{"sequence": 1, "code": "72148", "decision": "approved"}]
_DENIED = [{"sequence": 1, "code": "72148", "decision": "denied"}]


def test_a_denial_needs_a_reason_code():
    """A deny without a reason code is refused (CMS-0057-F: every denial has a specific reason)."""
    assert "a deny needs at least one specific reason code (CMS-0057-F)" == _refusal(
        outcome="deny", items=_DENIED, criteria_cited=["c"])


def test_a_denial_needs_a_criterion_cited():
    """A clinical deny citing no criterion is refused."""
    assert "a deny needs at least one criterion cited" == _refusal(
        outcome="deny", items=_DENIED, reason_codes=["criteria-not-met"])


def test_an_administrative_denial_cites_no_criterion():
    """A deny for coverage not in force rests on eligibility, so it may cite no criterion."""
    args = IssueDeterminationArgs(outcome="deny", items=_DENIED, reason_codes=["member-not-eligible"],
                                  explanation="Coverage not in force on the service date.")

    assert [] == args.criteria_cited


def test_a_partial_needs_reasons_and_criteria():
    """A partial without reasons or criteria is refused."""
    items = [*_APPROVED, {"sequence": 2, "code": "72149", "decision": "denied"}]

    assert "a partial needs at least one specific reason code (CMS-0057-F)" == _refusal(outcome="partial",
                                                                                        items=items)


def test_a_pend_must_request_documentation():
    """A pend without requested_documentation is refused."""
    assert "a pend must list requested_documentation (the criterion ids to document)" == _refusal(
        outcome="pend", items=[{"sequence": 1, "code": "72148", "decision": "pended"}])


def test_an_approval_must_approve_every_item():
    """An approve with a denied line is refused: that is a partial."""
    assert "an approve must approve every item: use partial when some are denied or modified" == _refusal(
        outcome="approve", items=[*_APPROVED, {"sequence": 2, "code": "72149", "decision": "denied"}])


def test_a_denial_must_deny_every_item():
    """A deny with an approved line is refused."""
    assert "a deny must deny every item: use partial when some are approved" == _refusal(
        outcome="deny", items=_APPROVED, reason_codes=["r"], criteria_cited=["c"])


def test_a_partial_that_approves_everything_is_refused():
    """A partial whose lines are all approved is an approve."""
    assert _refusal(outcome="partial", items=_APPROVED, reason_codes=["r"], criteria_cited=["c"]).startswith(
        "a partial approves or modifies some items")


def test_only_a_pend_requests_documentation():
    """An approve listing requested_documentation is refused."""
    assert "only a pend requests documentation: remove requested_documentation" == _refusal(
        outcome="approve", items=_APPROVED, requested_documentation=["c"])


def test_each_line_is_decided_once():
    """Two decisions for one line are refused."""
    assert "items decide a line twice ([1, 1]): one decision per Claim.item" == _refusal(
        outcome="approve", items=_APPROVED * 2)


def test_a_modified_line_needs_its_approved_quantity():
    """A modified line without approved_quantity is refused."""
    with pytest.raises(ValidationError) as err:
        ItemDecision(sequence=1, code="G0299", decision="modified")

    assert "Value error, item 1 is modified: give the approved_quantity" == err.value.errors()[0]["msg"]


def test_a_denied_line_has_no_approved_quantity():
    """A denied line with an approved_quantity is refused."""
    with pytest.raises(ValidationError) as err:
        ItemDecision(sequence=1, code="G0299", decision="denied", approved_quantity=3)

    assert "Value error, item 1 is denied: remove approved_quantity" == err.value.errors()[0]["msg"]


def test_explanation_is_at_most_500_characters():
    """An explanation longer than 500 characters is refused."""
    with pytest.raises(ValidationError) as err:
        IssueDeterminationArgs(outcome="approve", items=_APPROVED, explanation="x" * 501)

    assert ("string_too_long", ("explanation",)) == (err.value.errors()[0]["type"], err.value.errors()[0]["loc"])


def test_reason_codes_are_codes():
    """A free-text reason is refused: reason codes are lowercase codes."""
    assert "reason_codes[0] is not a code: use lowercase letters, digits, '.' and '-'" == _refusal(
        outcome="deny", items=_DENIED, reason_codes=["Not medically necessary"], criteria_cited=["c"])


def test_tool_name_is_fixed():
    """The arguments name their tool, as the other write tools' do."""
    assert "issue_determination" == IssueDeterminationArgs(outcome="approve", items=_APPROVED,
                                                           explanation="all met").tool


@pytest.mark.parametrize(("outcome", "decisions", "effect"), [
    ("approve", ("approved",), "none"),
    ("deny", ("denied",), "denies"),
    ("pend", ("pended",), "delays"),
    ("partial", ("approved", "denied"), "reduces"),
])
def test_service_effect_of_each_outcome(outcome, decisions, effect):
    """Approve affects nothing; deny denies, pend delays and partial reduces the member's services."""
    assert effect == service_effect(_args(outcome, decisions, ("G0299", "G0151")[:len(decisions)]))
