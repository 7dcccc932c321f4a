"""Tests for tools.notice: the member's notice of a denial or partial approval, written once with the ClaimResponse."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.communication import Communication
from pydantic import ValidationError

from store.fhir_validation import validate_resource
from tests.pas_factory import make_pas_request
from tools.criteria import criteria_version_id, load_criteria
from tools.determination import (
    REASON_SYSTEM,
    IssueDeterminationArgs,
    ItemDecision,
    WriteDeterminationInput,
    write_claim_response,
)
from tools.notice import (
    MEDICARE_ADVANTAGE_APPEALS,
    AppealRules,
    appeal_deadline,
    build_notice,
    notice_id,
    notice_text,
)
from tools.pas_request import parse_pas_bundle, save_submission, scoped_id
from tools.writes import SignedApproval

DECIDED = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
CRITERIA = load_criteria()
VERSION = criteria_version_id(CRITERIA)
DESCRIPTIONS = {c.criterion_id: c.description for p in CRITERIA.services for c in p.criteria}
MRI_MISSING = ["conservative-therapy-6-weeks", "neurological-examination"]
HOME_HEALTH_MISSING = ["skilled-need", "homebound-status"]


def _saved_request(store, **options):
    request = make_pas_request(store, **options)
    save_submission(store, request.bundle, parse_pas_bundle(request.bundle))
    return request


def _approval(*signers: tuple[str, str]) -> SignedApproval:
    return SignedApproval(approval_id="appr-1", decisions=[
        {"approval_id": "appr-1", "digest": "d", "decision": "approve", "approver": who, "role": role}
        for who, role in signers])


def _denial(request, key="wf-pa-9#a1-determination", **fields) -> WriteDeterminationInput:
    args = IssueDeterminationArgs(
        outcome="deny", reason_codes=["criteria-not-met"], criteria_cited=MRI_MISSING,
        explanation="Decided on the documented criteria.", items=[ItemDecision(sequence=1, code="72148",
                                                                               decision="denied")])
    return WriteDeterminationInput(**{
        "claim_id": request.claim_id, "member_id": request.member_id, "coverage_id": request.coverage_id,
        "idempotency_key": key, "approved_by": "dr.rivera, rn.kim",
        "approval": _approval(("dr.rivera", "md"), ("rn.kim", "rn")), "arguments": args, "decided_at": DECIDED,
        "criteria_version": VERSION, **fields})


def _partial(request, key="wf-pa-10#a1-determination") -> WriteDeterminationInput:
    args = IssueDeterminationArgs(
        outcome="partial", reason_codes=["criteria-not-met", "quantity-exceeds-policy"],
        criteria_cited=HOME_HEALTH_MISSING, explanation="Part of the visits are supported.",
        items=[ItemDecision(sequence=1, code="G0299", decision="modified", approved_quantity=6),
               ItemDecision(sequence=2, code="G0151", decision="denied")])
    return WriteDeterminationInput(
        claim_id=request.claim_id, member_id=request.member_id, coverage_id=request.coverage_id,
        idempotency_key=key, approved_by="dr.okafor", approval=_approval(("dr.okafor", "md")), arguments=args,
        decided_at=DECIDED, criteria_version=VERSION)


def _notice(store, result):
    [reference] = [r for r in result.related if r.startswith("Communication/")]
    return store.get("Communication", reference.split("/")[1])


def _text(store, result) -> str:
    return _notice(store, result)["payload"][0]["contentString"]


def _no_phi(text: str, request) -> list[str]:
    """The patient's name parts and birth date found in ``text`` (none expected)."""
    patient = request.member.resources[0]
    parts = [p for name in patient.get("name", []) for p in [name.get("family", ""), *name.get("given", [])] if p]
    return [p for p in [*parts, patient.get("birthDate", "")] if p and p in text]


# --- the plain-language text ---------------------------------------------------------------------------------------


def test_denial_notice_states_reason_criteria_policy_clocks_and_physician(store):
    """A denial's notice names each criterion not met in words, the policy version, the 65-day / 72-hour / 30-day
    clocks, that a tool assisted and the physician (by id and role) decided."""
    request = _saved_request(store)
    text = _text(store, write_claim_response(store, _denial(request)))

    expected = [DESCRIPTIONS[c] for c in MRI_MISSING] + [
        *MRI_MISSING, VERSION, "service code 72148", "denied", "medical-necessity criteria",
        "65 calendar days", "by 2026-05-07", "72 hours", "30 calendar days", "automated tool",
        "did not make the decision", "physician", "dr.rivera (role: md, physician)", "rn.kim (role: rn",
        "the provider who requested", "representative", MEDICARE_ADVANTAGE_APPEALS.version]
    assert [] == [phrase for phrase in expected if phrase not in text]


def test_partial_notice_states_each_line_and_every_criterion_not_met(store):
    """A partial approval's notice says per line what was approved and denied, and names every criterion not met."""
    request = _saved_request(store, service_code="G0299", extra_codes=("G0151",), quantity=12)
    text = _text(store, write_claim_response(store, _partial(request)))

    expected = [DESCRIPTIONS[c] for c in HOME_HEALTH_MISSING] + [
        "Notice of partial approval", "Line 1: service code G0299, 12 unit(s) requested: approved for 6 unit(s) only",
        "Line 2: service code G0151, 12 unit(s) requested: denied", "more than our medical policy supports",
        VERSION, "65 calendar days", "72 hours", "30 calendar days", "physician", "dr.okafor"]
    assert [] == [phrase for phrase in expected if phrase not in text]


@pytest.mark.parametrize("which", ["deny", "partial"])
def test_notice_holds_no_member_name_or_birth_date(store, which):
    """Only the member reference identifies the member: no name, no birth date, no free-text explanation."""
    if which == "deny":
        request = _saved_request(store)
        data = _denial(request)
    else:
        request = _saved_request(store, service_code="G0299", extra_codes=("G0151",), quantity=12)
        data = _partial(request)
    text = _text(store, write_claim_response(store, data))

    assert ([], True, False) == (_no_phi(text, request), f"Patient/{request.member_id}" in text,
                                 data.arguments.explanation in text)


def test_without_signed_roles_the_notice_names_the_approvers_and_the_physician_rule(store):
    """When only approved_by is known, the reviewer ids are named and the physician requirement stated."""
    request = _saved_request(store)
    text = _text(store, write_claim_response(store, _denial(request, approval=None, approved_by="dr.rivera")))

    assert ("reviewer(s) dr.rivera" in text, "physician" in text) == (True, True)


def test_criteria_of_another_version_are_named_by_id_not_reworded(store):
    """The notice quotes criterion wording only from the version applied; otherwise it names the ids."""
    request = _saved_request(store)
    text = _text(store, write_claim_response(store, _denial(request, criteria_version="um-medical-policy@2025.9")))

    assert ([], ["Criterion conservative-therapy-6-weeks", "Criterion neurological-examination"]) == (
        [DESCRIPTIONS[c] for c in MRI_MISSING if DESCRIPTIONS[c] in text],
        [f"Criterion {c}" for c in MRI_MISSING if f"Criterion {c}" in text])


def test_an_unknown_reason_code_is_named():
    """A reason code without plain wording is still stated, by its code."""
    request = make_pas_request()
    claim = next(e["resource"] for e in request.bundle["entry"] if e["resource"]["resourceType"] == "Claim")
    data = _denial(request)
    data.arguments.reason_codes.append("out-of-network")

    assert "Reason code out-of-network." in notice_text(data, claim, CRITERIA)


def test_no_notice_text_for_an_approval():
    """Only a deny or partial has a notice."""
    request = make_pas_request()
    claim = next(e["resource"] for e in request.bundle["entry"] if e["resource"]["resourceType"] == "Claim")
    data = _denial(request).model_copy(update={"arguments": IssueDeterminationArgs(
        outcome="approve", explanation="All met.", items=[ItemDecision(sequence=1, code="72148",
                                                                       decision="approved")])})
    with pytest.raises(ValueError, match="deny or partial"):
        notice_text(data, claim, CRITERIA)


# --- the appeal rules ----------------------------------------------------------------------------------------------


def test_medicare_advantage_clocks():
    """The defaults are the Medicare Advantage pre-service reconsideration clocks; the deadline counts calendar days."""
    rules = MEDICARE_ADVANTAGE_APPEALS

    assert ((65, 72, 30), "2026-05-07") == (
        (rules.request_within_days, rules.expedited_decision_hours, rules.standard_decision_days),
        appeal_deadline(DECIDED).isoformat())


def test_appeal_rules_are_frozen_and_checked():
    """The rules cannot be changed in place, and a bad value is refused."""
    with pytest.raises(ValidationError):
        MEDICARE_ADVANTAGE_APPEALS.request_within_days = 10
    with pytest.raises(ValidationError):
        AppealRules(**{**MEDICARE_ADVANTAGE_APPEALS.model_dump(), "request_within_days": 0})


def test_other_rules_change_the_stated_clocks():
    """A notice states the clocks of the rules it is given."""
    request = make_pas_request()
    claim = next(e["resource"] for e in request.bundle["entry"] if e["resource"]["resourceType"] == "Claim")
    rules = AppealRules(**{**MEDICARE_ADVANTAGE_APPEALS.model_dump(), "version": "test-1", "request_within_days": 60,
                           "standard_decision_days": 7})
    text = notice_text(_denial(request), claim, CRITERIA, rules)

    assert (True, True, False) == ("60 calendar days" in text, "within 7 calendar days" in text,
                                   "65 calendar days" in text)


# --- the FHIR resource and the write -------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["deny", "partial"])
def test_notice_is_a_valid_communication_to_the_member_about_the_claim_response(store, which):
    """The notice validates as R4B, is addressed to the member with the provider copied, and is about the
    ClaimResponse and Claim, from the coverage's payor."""
    if which == "deny":
        request = _saved_request(store)
        data = _denial(request)
    else:
        request = _saved_request(store, service_code="G0299", extra_codes=("G0151",), quantity=12)
        data = _partial(request)
    result = write_claim_response(store, data)
    notice = _notice(store, result)
    communication = Communication.model_validate(notice)
    coverage = store.get("Coverage", request.coverage_id)

    assert notice == validate_resource(notice)
    assert (notice_id(data.idempotency_key), f"Patient/{request.member_id}",
            [f"Patient/{request.member_id}", f"Practitioner/{scoped_id(request.claim_id, request.provider_id)}"],
            [result.reference, f"Claim/{request.claim_id}"], coverage["payor"][0]["reference"],
            [(REASON_SYSTEM, c) for c in data.arguments.reason_codes],
            {"valueString": VERSION}) == (
        communication.id, communication.subject.reference, [r.reference for r in communication.recipient],
        [r.reference for r in communication.about], communication.sender.reference,
        [(c.coding[0].system, c.coding[0].code) for c in communication.reasonCode],
        {k: v for k, v in notice["extension"][0].items() if k != "url"})


def test_build_notice_is_pure_and_stable():
    """The same determination builds the same notice (id from the idempotency key)."""
    request = make_pas_request()
    resources = {e["resource"]["resourceType"]: e["resource"] for e in request.bundle["entry"]}
    data = _denial(request)
    build = lambda: build_notice(data, resources["Claim"], resources["Coverage"], "cr-1", CRITERIA)  # noqa: E731

    assert build() == build()


def test_a_denial_written_twice_with_the_same_key_writes_one_notice(store):
    """A retried denial returns the same ClaimResponse and notice, writing neither again."""
    request = _saved_request(store)
    first = write_claim_response(store, _denial(request))
    second = write_claim_response(store, _denial(request))

    assert ((True, False), first.related, 1, 1, 1) == (
        (first.created, second.created), second.related, len(first.related), store.count("ClaimResponse"),
        store.count("Communication"))


def test_an_approval_writes_no_notice(store):
    """An approve writes only its ClaimResponse: no notice."""
    request = _saved_request(store)
    args = IssueDeterminationArgs(outcome="approve", explanation="All criteria met.",
                                  items=[ItemDecision(sequence=1, code="72148", decision="approved")])
    result = write_claim_response(store, _denial(request, arguments=args, approval=None, approved_by=None))

    assert ([], 0) == (result.related, store.count("Communication"))


def test_a_pend_writes_its_task_and_no_notice(store):
    """A pend is not an adverse determination's notice: its Task only."""
    request = _saved_request(store)
    args = IssueDeterminationArgs(outcome="pend", explanation="Need records.", requested_documentation=MRI_MISSING,
                                  items=[ItemDecision(sequence=1, code="72148", decision="pended")])
    result = write_claim_response(store, _denial(request, arguments=args))

    assert (["Task"], 0) == ([r.split("/")[0] for r in result.related], store.count("Communication"))
