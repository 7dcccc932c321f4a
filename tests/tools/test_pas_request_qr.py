"""A completed DTR QuestionnaireResponse sent inside a PAS request Bundle is stored with the request
(tools.pas_request): scoped id, named by the Claim in its qr-context, listed in ``questionnaire_response_ids``, part of the content digest,
and enough evidence on its own for the request to be accepted."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from store.submissions import SubmissionStore
from tests.dtr_answers import completed_response
from tests.pas_factory import PasRequest, make_pas_request
from tools.criteria import load_criteria
from tools.pas_diff import SUBMITTED_ID_SYSTEM
from tools.pas_request import (
    PriorAuthRequestError,
    SubmissionConflict,
    load_notes,
    parse_pas_bundle,
    save_submission,
    scoped_id,
)
from tools.qr_answers import QR_CONTEXT, check_response, request_of

ANSWERS = {"conservative-therapy-6-weeks": True, "neurological-deficit-or-failed-therapy": True}


def _with_response(request: PasRequest, response: dict[str, Any] | None = None) -> dict[str, Any]:
    """The request's Bundle with a completed response to its questionnaire appended (a deep copy)."""
    bundle = copy.deepcopy(request.bundle)
    response = response or completed_response(request.claim_id, request.member_id, ANSWERS)
    bundle["entry"].append({"fullUrl": f"http://provider.example/fhir/QuestionnaireResponse/{response['id']}",
                            "resource": response})
    return bundle


def _save(store, bundle: dict[str, Any], **kwargs: Any):
    return save_submission(store, bundle, parse_pas_bundle(bundle), **kwargs)


def _tables(store):
    return store.db.read(lambda db: (
        db.rows("SELECT resource_type, id, content, content_sha256, updated_at FROM resources ORDER BY 1, 2"),
        db.rows("SELECT * FROM prior_auth_submissions ORDER BY claim_id, version"),
        db.rows("SELECT claim_id, version, user_id FROM prior_auth_submitters ORDER BY 1, 2, 3")))


def test_a_response_with_notes_is_stored_scoped_and_passes_the_review_check(store):
    """Notes + a QR: the QR is stored under its scoped id, listed in the submission and the record, its submitted
    id kept, and the stored copy is accepted by check_response against the stored Claim."""
    request = make_pas_request(store)
    saved = _save(store, _with_response(request))
    response_id = scoped_id(request.claim_id, "qr-answer-1")
    stored = store.get("QuestionnaireResponse", response_id)
    claim = store.get("Claim", request.claim_id)

    assert [response_id] == saved.submission.questionnaire_response_ids
    assert sorted(scoped_id(request.claim_id, n) for n in request.note_ids) == saved.submission.note_ids
    assert f"QuestionnaireResponse/{response_id}" in saved.record.resources
    assert {"system": SUBMITTED_ID_SYSTEM, "value": "qr-answer-1"} == stored["identifier"]
    checked = check_response(stored, claim=claim, member_id=request.member_id, criteria=load_criteria())
    assert ("lumbar-spine-mri", "Practitioner/pr-attesting", list(ANSWERS)) == (
        checked.policy_id, checked.attested_by, checked.answered)
    assert ["qr-answer-1"] == parse_pas_bundle(_with_response(request)).questionnaire_response_ids


def test_a_request_with_only_a_response_is_accepted_and_has_no_notes(store):
    """No DocumentReference at all, one completed QR: accepted, no notes to read, the QR stored."""
    request = make_pas_request(store, omit_notes=True)
    saved = _save(store, _with_response(request))

    assert ([], [scoped_id(request.claim_id, "qr-answer-1")]) == (
        saved.submission.note_ids, saved.submission.questionnaire_response_ids)
    assert [] == SubmissionStore(store.db).latest(request.claim_id).stored("DocumentReference")
    assert [] == load_notes(store, request.claim_id)
    assert store.get("QuestionnaireResponse", scoped_id(request.claim_id, "qr-answer-1")) is not None


def test_neither_notes_nor_a_response_is_missing_notes_naming_both_fixes():
    request = make_pas_request(omit_notes=True)
    with pytest.raises(PriorAuthRequestError) as err:
        parse_pas_bundle(request.bundle)

    assert ("missing_notes", "the request has no clinical notes with text (0 DocumentReference(s), none with a"
            " text/plain attachment) and no QuestionnaireResponse: attach the notes as DocumentReferences with"
            " content.attachment contentType text/plain and base64 data, or the completed DTR"
            " QuestionnaireResponse") == (err.value.code, str(err.value))


def test_the_identical_bundle_twice_is_the_same_record_and_writes_nothing(store):
    request = make_pas_request(store)
    bundle = _with_response(request)
    first = _save(store, bundle, submitted_by="intake-a")
    before = _tables(store)
    again = _save(store, copy.deepcopy(bundle), submitted_by="intake-a")

    assert (False, first.record, first.submission) == (again.created, again.record, again.submission)
    assert before == _tables(store)


def test_a_changed_answer_under_the_same_claim_is_a_conflict_and_changes_nothing(store):
    """The same Claim id with one answer turned from yes to no: conflict naming the response, nothing written."""
    request = make_pas_request(store)
    _save(store, _with_response(request))
    before = _tables(store)
    changed = completed_response(request.claim_id, request.member_id,
                                 {**ANSWERS, "neurological-deficit-or-failed-therapy": False})
    changed["authored"] = store.get("QuestionnaireResponse", scoped_id(request.claim_id, "qr-answer-1"))["authored"]
    with pytest.raises(SubmissionConflict) as err:
        _save(store, _with_response(request, changed))

    assert ("conflict", True) == (err.value.code, "QuestionnaireResponse " in str(err.value)
                                  and " item" in str(err.value))
    assert "authored" not in str(err.value)
    assert before == _tables(store)


def test_a_response_without_qr_context_is_stored_naming_the_claim(store):
    """Sent without the qr-context extension: the stored copy names the request's Claim, and the review accepts it."""
    request = make_pas_request(store)
    response = completed_response(request.claim_id, request.member_id, ANSWERS)
    del response["extension"]
    saved = _save(store, _with_response(request, response))
    stored = store.get("QuestionnaireResponse", saved.submission.questionnaire_response_ids[0])

    assert [{"url": QR_CONTEXT, "valueReference": {"reference": f"Claim/{request.claim_id}"}}] == stored["extension"]
    assert request.claim_id == request_of(stored)
    check_response(stored, claim=store.get("Claim", request.claim_id), member_id=request.member_id,
                   criteria=load_criteria())


def test_a_qr_context_by_full_url_is_stored_as_the_claim_reference(store):
    """A qr-context pointing at the Claim entry's fullUrl is stored as Claim/<id>, like any other reference."""
    request = make_pas_request(store)
    response = completed_response(request.claim_id, request.member_id, ANSWERS)
    claim_url = next(e["fullUrl"] for e in request.bundle["entry"] if e["resource"]["resourceType"] == "Claim")
    response["extension"][0]["valueReference"]["reference"] = claim_url
    saved = _save(store, _with_response(request, response))
    stored = store.get("QuestionnaireResponse", saved.submission.questionnaire_response_ids[0])

    assert request.claim_id == request_of(stored)


def test_a_response_naming_another_request_or_member_is_refused():
    request = make_pas_request()
    other_claim = completed_response("claim-someone-else", request.member_id, ANSWERS)
    other_member = completed_response(request.claim_id, "pt-someone-else", ANSWERS)
    index = len(request.bundle["entry"])
    errors = []
    for response in (other_claim, other_member):
        with pytest.raises(PriorAuthRequestError) as err:
            parse_pas_bundle(_with_response(request, response))
        errors.append((err.value.code, str(err.value).split(":")[0]))

    assert [("invalid_resource", f"entry[{index}] QuestionnaireResponse answers Claim/claim-someone-else (its"
             f" {QR_CONTEXT.split(':')[0]}"),
            ("invalid_resource", f"entry[{index}] QuestionnaireResponse.subject is Patient/pt-someone-else, not the"
             f" Claim's patient Patient/{request.member_id}")] == errors


def test_an_invalid_response_is_refused_as_invalid_fhir():
    """An answer item without its linkId is not valid FHIR: the entry is refused, naming it."""
    request = make_pas_request()
    response = completed_response(request.claim_id, request.member_id, ANSWERS)
    del response["item"][0]["linkId"]
    index = len(request.bundle["entry"])
    with pytest.raises(PriorAuthRequestError) as err:
        parse_pas_bundle(_with_response(request, response))

    assert ("invalid_resource", f"entry[{index}] is not valid:", True) == (
        err.value.code, str(err.value)[:len(f"entry[{index}] is not valid:")], "item.0.linkId" in str(err.value))
