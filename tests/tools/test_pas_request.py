"""Tests for tools.pas_request: PAS request Bundles parsed, checked, saved all-or-nothing, notes read back."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from store.fhir_validation import InvalidResource, validate_resource
from store.importer import import_ndjson
from tests.pas_factory import CPT, MRI_NOTES_AGAINST, MRI_NOTES_MET, make_pas_request
from tools.criteria import load_criteria
from tools.pas_models import Note, RequestedService
from tools.pas_request import (
    PriorAuthRequestError,
    check_submission,
    load_notes,
    parse_pas_bundle,
    save_submission,
    scoped_id,
)

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def _refused(bundle) -> PriorAuthRequestError:
    with pytest.raises(PriorAuthRequestError) as err:
        parse_pas_bundle(bundle)
    return err.value


def _entry(bundle, resource_type):
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type)


def _snapshot(store):
    # Every row, content included: "nothing written" means exactly that.
    return store.db.read(lambda db: db.rows("SELECT resource_type, id, content FROM resources ORDER BY 1, 2"))


def _saved(store, request):
    submission = parse_pas_bundle(request.bundle)
    return submission, save_submission(store, request.bundle, submission)


# --- parse_pas_bundle ------------------------------------------------------------------------------------


def test_parse_reads_the_identifiers_of_the_request():
    """The submission names the Claim, member, coverage, provider, the service lines and the notes."""
    request = make_pas_request()
    submission = parse_pas_bundle(request.bundle)

    assert (request.claim_id, request.member_id, request.coverage_id, request.provider_id, request.note_ids,
            [RequestedService(sequence=1, code="72148", system=CPT, quantity=1)]) == (
        submission.claim_id, submission.member_id, submission.coverage_id, submission.provider_id,
        submission.note_ids, submission.items)


def test_normal_priority_is_standard():
    """A Claim with priority normal is a standard request (7-day clock)."""
    assert "standard" == parse_pas_bundle(make_pas_request().bundle).priority


def test_stat_priority_is_expedited():
    """A Claim with priority stat is an expedited request (72-hour clock)."""
    assert "expedited" == parse_pas_bundle(make_pas_request(priority="stat").bundle).priority


def test_received_at_is_claim_created_in_utc():
    """Claim.created with an offset becomes an aware UTC datetime."""
    submission = parse_pas_bundle(make_pas_request(created="2026-03-02T14:05:00-05:00").bundle)

    assert datetime(2026, 3, 2, 19, 5, tzinfo=UTC) == submission.received_at


def test_received_at_of_a_bare_date_is_midnight_utc():
    """Claim.created with only a date is midnight UTC of that date."""
    submission = parse_pas_bundle(make_pas_request(created="2026-03-02").bundle)

    assert datetime(2026, 3, 2, tzinfo=UTC) == submission.received_at


def test_service_date_comes_from_the_item():
    """The service date is the item's servicedDate."""
    assert date(2026, 3, 9) == parse_pas_bundle(make_pas_request(serviced_date="2026-03-09").bundle).service_date


def test_service_date_can_come_from_a_serviced_period():
    """Without servicedDate, the item's servicedPeriod.start is the service date."""
    request = make_pas_request(serviced_date=None)
    _entry(request.bundle, "Claim")["item"][0]["servicedPeriod"] = {"start": "2026-04-01", "end": "2026-04-30"}

    assert date(2026, 4, 1) == parse_pas_bundle(request.bundle).service_date


def test_service_date_falls_back_to_the_created_date():
    """Without any service date on the items, the date the Claim was created is used."""
    request = make_pas_request(serviced_date=None, created="2026-03-02T23:30:00-05:00")

    assert date(2026, 3, 3) == parse_pas_bundle(request.bundle).service_date


def test_every_service_line_is_read_with_its_quantity():
    """Each Claim.item becomes a RequestedService; a missing quantity is 1."""
    request = make_pas_request(service_code="G0299", extra_codes=("G0151",), quantity=12)
    del _entry(request.bundle, "Claim")["item"][1]["quantity"]

    assert [(1, "G0299", 12), (2, "G0151", 1)] == [
        (i.sequence, i.code, i.quantity) for i in parse_pas_bundle(request.bundle).items]


def test_note_ids_are_the_documents_with_text():
    """Every DocumentReference with a text/plain attachment is a note, ids sorted."""
    request = make_pas_request(notes=("first note", "second note", "third note"))

    assert sorted(request.note_ids) == parse_pas_bundle(request.bundle).note_ids


def test_transaction_bundle_with_urn_uuid_references_is_read():
    """A transaction Bundle whose entries have urn:uuid fullUrls and no ids resolves its references."""
    request = make_pas_request(bundle_type="transaction")
    bundle = _as_urn_transaction(request.bundle)
    urns = {e["resource"]["resourceType"]: e["fullUrl"].removeprefix("urn:uuid:") for e in bundle["entry"]}
    submission = parse_pas_bundle(bundle)

    assert (urns["Claim"], request.member_id, request.coverage_id, urns["Practitioner"]) == (
        submission.claim_id, submission.member_id, submission.coverage_id, submission.provider_id)


def _as_urn_transaction(bundle):
    """The same request as a transaction: urn:uuid fullUrls, references to them, new resources without ids."""
    bundle = copy.deepcopy(bundle)
    urns = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        urn = f"urn:uuid:{uuid.uuid4()}"
        urns[f"{resource['resourceType']}/{resource['id']}"] = urn
        entry["fullUrl"] = urn
        entry["request"] = {"method": "POST", "url": resource["resourceType"]}
    text = json.dumps(bundle)
    for key, urn in urns.items():
        text = text.replace(f'"reference": "{key}"', f'"reference": "{urn}"')
    bundle = json.loads(text)
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] not in ("Patient", "Coverage"):  # the plan's records keep their ids
            del entry["resource"]["id"]
    return bundle


# --- refusals -----------------------------------------------------------------------------------------------


def test_a_resource_that_is_not_a_bundle_is_refused():
    """A bare Claim is not_a_bundle, and the message says what to send."""
    err = _refused(_entry(make_pas_request().bundle, "Claim"))

    assert ("not_a_bundle", "expected a FHIR Bundle, got 'Claim': send the PAS request Bundle (type collection)"
            " whose first entry is the Claim") == (err.code, str(err))


def test_a_json_list_is_not_a_bundle():
    """A JSON array is refused as not_a_bundle."""
    assert "not_a_bundle" == _refused([]).code


def test_a_searchset_bundle_is_not_a_request():
    """A Bundle of type searchset is not_prior_auth, naming the type to use."""
    request = make_pas_request(bundle_type="searchset")
    err = _refused(request.bundle)

    assert ("not_prior_auth", "Bundle.type is 'searchset'; a prior-authorization request is a collection (Da Vinci"
            " PAS) or transaction Bundle: resend it with type collection") == (err.code, str(err))


def test_a_bundle_without_a_claim_is_not_a_request():
    """A Bundle with no Claim is not_prior_auth."""
    request = make_pas_request()
    request.bundle["entry"] = [e for e in request.bundle["entry"] if e["resource"]["resourceType"] != "Claim"]
    err = _refused(request.bundle)

    assert ("not_prior_auth", "this Bundle is not a prior-authorization request: it holds no Claim; a PAS request"
            " carries one Claim with use 'preauthorization'") == (err.code, str(err))


def test_a_claim_for_payment_is_not_a_request():
    """Claim.use 'claim' is refused as not_prior_auth, naming the use and the fix."""
    err = _refused(make_pas_request(claim_use="claim").bundle)

    assert ("not_prior_auth", "this Bundle is not a prior-authorization request: Claim.use is 'claim'; send claims"
            " for payment to the claims intake, or set Claim.use to 'preauthorization' for a prior-authorization"
            " request") == (err.code, str(err))


def test_a_predetermination_is_not_a_request():
    """Claim.use 'predetermination' is not a prior authorization either."""
    assert "not_prior_auth" == _refused(make_pas_request(claim_use="predetermination").bundle).code


def test_claim_use_outside_its_value_set_is_invalid():
    """Claim.use 'bogus' breaks the required value set and names the entry."""
    err = _refused(make_pas_request(claim_use="bogus").bundle)

    assert ("invalid_resource", "entry[0] is not valid: Claim.use = 'bogus' is not in its required value set (claim,"
            " preauthorization, predetermination): fix that resource and resend") == (err.code, str(err))


def test_a_cancelled_claim_is_not_decided():
    """A cancelled Claim is not a request to decide."""
    request = make_pas_request()
    _entry(request.bundle, "Claim")["status"] = "cancelled"

    assert "not_prior_auth" == _refused(request.bundle).code


def test_an_invalid_resource_names_its_entry_index():
    """A resource failing R4B validation is invalid_resource and names its entry index."""
    request = make_pas_request()
    request.bundle["entry"][3]["resource"]["birthDate"] = "yesterday"  # entry 3 is the Practitioner
    err = _refused(request.bundle)

    assert ("invalid_resource", True, True) == (
        err.code, str(err).startswith("entry[3] is not valid: Practitioner is not valid FHIR R4: birthDate"),
        str(err).endswith(": fix that resource and resend"))


def test_a_note_status_outside_its_value_set_is_invalid():
    """A DocumentReference with status 'bogus' is refused with its entry index."""
    request = make_pas_request()
    request.bundle["entry"][-1]["resource"]["status"] = "bogus"
    index = len(request.bundle["entry"]) - 1

    assert f"entry[{index}] is not valid: DocumentReference.status = 'bogus'" in str(_refused(request.bundle))


def test_a_request_without_notes_is_refused():
    """No DocumentReference notes is missing_notes, saying how to attach them."""
    err = _refused(make_pas_request(omit_notes=True).bundle)

    assert ("missing_notes", "the request has no clinical notes with text (0 DocumentReference(s), none with a"
            " text/plain attachment) and no QuestionnaireResponse: attach the notes as DocumentReferences with"
            " content.attachment contentType text/plain and base64 data, or the completed DTR QuestionnaireResponse"
            ) == (err.code, str(err))


def test_a_pdf_only_note_is_missing_notes():
    """A DocumentReference holding only a PDF is not a note careloom can read."""
    request = make_pas_request(notes=("text",))
    request.bundle["entry"][-1]["resource"]["content"][0]["attachment"]["contentType"] = "application/pdf"

    assert ("missing_notes", True) == (
        _refused(request.bundle).code, "(1 DocumentReference(s)" in str(_refused(request.bundle)))


def test_a_blank_note_is_not_a_note():
    """A text/plain attachment holding only whitespace does not count as a note."""
    assert "missing_notes" == _refused(make_pas_request(notes=("   \n",)).bundle).code


def test_a_note_that_is_not_utf8_is_invalid():
    """Attachment data that does not decode as UTF-8 text is refused with the fix."""
    request = make_pas_request(notes=("x",))
    request.bundle["entry"][-1]["resource"]["content"][0]["attachment"]["data"] = base64.b64encode(
        b"\xff\xfe\xfa").decode()

    assert "is not base64 utf-8 text: encode the note as base64 UTF-8" in str(_refused(request.bundle))


def test_a_note_about_another_patient_is_invalid():
    """A note whose subject is not the Claim's patient is refused: notes must be about the member."""
    request = make_pas_request(notes=("x",))
    request.bundle["entry"][-1]["resource"]["subject"] = {"reference": "Patient/someone-else"}
    err = _refused(request.bundle)
    index = len(request.bundle["entry"]) - 1

    assert ("invalid_resource", f"entry[{index}] DocumentReference.subject is Patient/someone-else, not the Claim's"
            f" patient Patient/{request.member_id}: a request's documents must be about its member") == (
        err.code, str(err))


def test_a_note_without_a_subject_is_invalid():
    """A note must name its patient (US Core DocumentReference.subject is required)."""
    request = make_pas_request(notes=("x",))
    del request.bundle["entry"][-1]["resource"]["subject"]
    index = len(request.bundle["entry"]) - 1

    assert (f"entry[{index}] DocumentReference.subject has no reference: point it at the Patient entry of the"
            " Bundle") == str(_refused(request.bundle))


def test_a_dangling_urn_reference_is_invalid():
    """A urn:uuid reference to nothing in the Bundle is refused, saying how to fix it."""
    request = make_pas_request()
    _entry(request.bundle, "Claim")["provider"] = {"reference": "urn:uuid:0b0e4a8e-0000-4000-8000-000000000000"}

    assert ("Claim.provider = 'urn:uuid:0b0e4a8e-0000-4000-8000-000000000000' is not in the Bundle: add the"
            " Practitioner entry, or reference it as Practitioner/<id>") == str(_refused(request.bundle))


def test_a_provider_that_is_not_a_practitioner_is_invalid():
    """Claim.provider must name the requesting Practitioner, who receives any request for documentation."""
    request = make_pas_request()
    _entry(request.bundle, "Claim")["provider"] = {"reference": "Organization/clinic-1"}

    assert "Claim.provider points at Organization/clinic-1, not at a Practitioner: fix the reference" == str(
        _refused(request.bundle))


def test_a_claim_without_service_lines_is_invalid():
    """A Claim with no items has nothing to decide."""
    request = make_pas_request()
    del _entry(request.bundle, "Claim")["item"]

    assert ("invalid_resource", "Claim.item is empty: list each requested service with its CPT, HCPCS or revenue"
            " code") == (_refused(request.bundle).code, str(_refused(request.bundle)))


def test_a_fractional_quantity_is_invalid():
    """1.5 units cannot be authorized."""
    request = make_pas_request()
    _entry(request.bundle, "Claim")["item"][0]["quantity"] = {"value": 1.5}

    assert ("Claim.item[0].quantity is 1.5: request a whole number of units, visits or days") == str(
        _refused(request.bundle))


# --- check_submission ------------------------------------------------------------------------------------------


def test_a_known_member_and_service_pass_the_check(store):
    """A request for a stored member, their coverage and a covered code passes."""
    request = make_pas_request(store)

    assert None is check_submission(store, parse_pas_bundle(request.bundle), load_criteria())


def test_an_unknown_member_is_refused(store):
    """A Patient the store does not hold is unknown_member, naming it."""
    request = make_pas_request(store, unknown_member=True)
    with pytest.raises(PriorAuthRequestError) as err:
        check_submission(store, parse_pas_bundle(request.bundle), load_criteria())

    assert ("unknown_member", f"no member Patient/{request.member_id} in the records store: check Claim.patient, or"
            " import the member's records before the request") == (err.value.code, str(err.value))


def test_an_unknown_coverage_is_refused(store):
    """A Coverage the store does not hold is unknown_coverage."""
    request = make_pas_request(store, unknown_coverage=True)
    with pytest.raises(PriorAuthRequestError) as err:
        check_submission(store, parse_pas_bundle(request.bundle), load_criteria())

    assert ("unknown_coverage", f"no Coverage/{request.coverage_id} in the records store: check"
            " Claim.insurance.coverage against the member's coverage") == (err.value.code, str(err.value))


def test_another_members_coverage_is_refused(store):
    """A coverage that belongs to someone else is unknown_coverage, naming its owner."""
    other = make_pas_request(store)
    request = make_pas_request(store)
    _entry(request.bundle, "Claim")["insurance"][0]["coverage"] = {"reference": f"Coverage/{other.coverage_id}"}
    with pytest.raises(PriorAuthRequestError) as err:
        check_submission(store, parse_pas_bundle(request.bundle), load_criteria())

    assert ("unknown_coverage", f"Coverage/{other.coverage_id} belongs to Patient/{other.member_id}, not to member"
            f" Patient/{request.member_id}: point Claim.insurance.coverage at the member's own coverage") == (
        err.value.code, str(err.value))


def test_a_code_no_policy_covers_is_refused_with_the_known_codes(store):
    """A service code outside the policy is unknown_service_code, listing the codes careloom knows."""
    request = make_pas_request(store, service_code="99213")
    with pytest.raises(PriorAuthRequestError) as err:
        check_submission(store, parse_pas_bundle(request.bundle), load_criteria())

    assert ("unknown_service_code", "no medical policy of um-medical-policy 2026.1 covers service code(s) 99213;"
            " known codes: 0022, 72148, 72149, 72158, G0151, G0152, G0153, G0299, G0300: check the code, or route"
            " the request to manual review") == (err.value.code, str(err.value))


# --- save_submission -----------------------------------------------------------------------------------------


def test_save_writes_claim_notes_practitioner_and_service_request(store):
    """The Claim (its own id), its notes, the Practitioner and the ServiceRequest (ids scoped to the request)
    are written, and the run's submission names the stored ids; nothing else is written."""
    request = make_pas_request(store, notes=("a", "b"))
    before = store.count()
    _, saved = _saved(store, request)
    scoped = [scoped_id(request.claim_id, n) for n in request.note_ids]

    assert ({f"Claim/{request.claim_id}", f"Practitioner/{scoped_id(request.claim_id, request.provider_id)}",
             f"ServiceRequest/{scoped_id(request.claim_id, 'sr-' + request.claim_id.removeprefix('claim-'))}",
             *(f"DocumentReference/{n}" for n in scoped)}, 5, True) == (
        set(saved.record.resources), store.count() - before, saved.created)
    assert (request.claim_id, scoped_id(request.claim_id, request.provider_id), scoped) == (
        saved.submission.claim_id, saved.submission.provider_id, saved.submission.note_ids)


def test_save_never_overwrites_the_plans_member_records(store):
    """The provider's copies of Patient and Coverage are not stored over the plan's own."""
    request = make_pas_request(store)
    _entry(request.bundle, "Patient")["name"] = [{"family": "Typo"}]
    before = (store.get("Patient", request.member_id), store.get("Coverage", request.coverage_id))
    _saved(store, request)

    assert before == (store.get("Patient", request.member_id), store.get("Coverage", request.coverage_id))


def test_saving_the_same_bundle_again_changes_nothing(store):
    """A second save of the same Bundle leaves every resource unchanged and answers the first record."""
    request = make_pas_request(store)
    submission, first = _saved(store, request)
    before = _snapshot(store)
    again = save_submission(store, request.bundle, submission)

    assert (False, first.record, first.submission, before) == (again.created, again.record, again.submission,
                                                               _snapshot(store))


def test_saved_claim_is_found_for_its_member(store):
    """The stored Claim is indexed under the member (Claim.patient)."""
    request = make_pas_request(store)
    _saved(store, request)

    assert [request.claim_id] == [c["id"] for c in store.find_for_member("Claim", request.member_id)]


def test_saved_resources_validate(store):
    """Everything saved validates with the project's validator."""
    request = make_pas_request(store)
    _, saved = _saved(store, request)
    stored = [store.get(*ref.split("/", 1)) for ref in saved.record.resources]

    assert stored == [validate_resource(r) for r in stored]


def test_urn_references_are_stored_as_type_and_id(store):
    """Saved from a transaction Bundle, the Claim references Patient/<id> and Practitioner/<id>, not urn:uuid."""
    request = make_pas_request(store)
    bundle = _as_urn_transaction(request.bundle)
    submission = parse_pas_bundle(bundle)
    save_submission(store, bundle, submission)
    claim = store.get("Claim", submission.claim_id)

    assert (f"Patient/{request.member_id}", f"Practitioner/{scoped_id(submission.claim_id, submission.provider_id)}"
            ) == (claim["patient"]["reference"], claim["provider"]["reference"])


def test_refused_save_of_an_unknown_member_writes_nothing(store):
    """A save for a member the store does not hold is refused and leaves the store as it was."""
    request = make_pas_request(store, unknown_member=True)
    submission = parse_pas_bundle(request.bundle)
    before = _snapshot(store)
    with pytest.raises(PriorAuthRequestError) as err:
        save_submission(store, request.bundle, submission)

    assert ("unknown_member", before) == (err.value.code, _snapshot(store))


def test_refused_save_of_an_invalid_bundle_writes_nothing(store):
    """A save of a Bundle with an invalid note is refused and leaves the store as it was."""
    request = make_pas_request(store)
    submission = parse_pas_bundle(request.bundle)
    request.bundle["entry"][-1]["resource"]["status"] = "bogus"
    before = _snapshot(store)
    with pytest.raises(PriorAuthRequestError) as err:
        save_submission(store, request.bundle, submission)

    assert ("invalid_resource", before) == (err.value.code, _snapshot(store))


def test_save_refuses_a_submission_from_another_bundle(store):
    """A submission parsed from one Bundle cannot be saved with another; nothing is written."""
    first, second = make_pas_request(store), make_pas_request(store)
    before = _snapshot(store)
    with pytest.raises(PriorAuthRequestError) as err:
        save_submission(store, second.bundle, parse_pas_bundle(first.bundle))

    assert (f"the submission for Claim/{first.claim_id} was not parsed from this Bundle (Claim/{second.claim_id}):"
            " parse the Bundle again and save both together", before) == (str(err.value), _snapshot(store))


# --- load_notes -------------------------------------------------------------------------------------------------


def test_load_notes_decodes_the_saved_notes(store):
    """The notes come back as their decoded text, by document id."""
    request = make_pas_request(store, notes=MRI_NOTES_MET + MRI_NOTES_AGAINST)
    _saved(store, request)

    assert [Note(document_id=scoped_id(request.claim_id, i), text=t)
            for i, t in zip(request.note_ids, MRI_NOTES_MET + MRI_NOTES_AGAINST, strict=True)
            ] == load_notes(store, request.claim_id)


def test_load_notes_reads_only_this_requests_notes(store):
    """Two requests for one member each read their own notes."""
    first = make_pas_request(store, notes=("first",))
    second = make_pas_request(store, member=first.member, notes=("second",))
    _saved(store, first)
    _saved(store, second)

    assert (["first"], ["second"]) == ([n.text for n in load_notes(store, first.claim_id)],
                                       [n.text for n in load_notes(store, second.claim_id)])


def test_a_note_sent_with_two_requests_is_stored_once_per_request(store):
    """A note id sent with two requests is two stored notes, each linked to its own Claim only."""
    first = make_pas_request(store, notes=("shared",))
    second = make_pas_request(store, member=first.member, notes=())
    second.bundle["entry"].append(copy.deepcopy(first.bundle["entry"][-1]))
    _saved(store, first)
    _saved(store, second)
    notes = load_notes(store, first.claim_id), load_notes(store, second.claim_id)

    assert (["shared"], ["shared"]) == tuple([n.text for n in found] for found in notes)
    assert ([[{"reference": f"Claim/{first.claim_id}"}]], [[{"reference": f"Claim/{second.claim_id}"}]]) == tuple(
        [store.get("DocumentReference", n.document_id)["context"]["related"] for n in found] for found in notes)


def test_load_notes_of_an_unknown_claim_is_refused(store):
    """Reading the notes of a Claim never saved is unknown_claim, saying to save it first."""
    with pytest.raises(PriorAuthRequestError) as err:
        load_notes(store, "claim-nope")

    assert ("unknown_claim", "no Claim/claim-nope in the records store: save the request (save_submission) before"
            " reading its notes") == (err.value.code, str(err.value))


# --- value sets and the shipped samples ---------------------------------------------------------------------------


def test_claim_response_outcome_value_set_is_enforced():
    """A ClaimResponse whose outcome is not queued|complete|error|partial is refused by the validator."""
    response = {"resourceType": "ClaimResponse", "status": "active", "type": {"text": "professional"},
                "use": "preauthorization", "patient": {"reference": "Patient/p"}, "created": "2026-03-02",
                "insurer": {"reference": "Organization/o"}, "outcome": "approved"}
    with pytest.raises(InvalidResource) as err:
        validate_resource(response)

    assert ("ClaimResponse.outcome = 'approved' is not in its required value set (complete, error, partial,"
            " queued)") == str(err.value)


def test_shipped_sample_requests_are_for_sample_members(store):
    """Every sample request parses and passes the check against the shipped sample members and coverages."""
    for name in ("Patient.ndjson", "Coverage.ndjson"):
        import_ndjson(store, SAMPLES / "fhir_r4" / name)
    samples = sorted((SAMPLES / "prior_auth").glob("*.json"))
    for path in samples:
        submission = parse_pas_bundle(json.loads(path.read_text(encoding="utf-8")))
        check_submission(store, submission, load_criteria())

    assert 5 == len(samples)
