"""A submitted prior-authorization request is an immutable, versioned record (tools.pas_request, store.submissions):
resubmissions with other content or for another member are refused and change nothing; limits refuse up front."""

from __future__ import annotations

import base64
import json

import pytest

from store.database import StoreError
from store.submissions import SubmissionStore
from tests.pas_factory import MRI_NOTES_MET, make_pas_request
from tools.pas_limits import IntakeLimits
from tools.pas_request import PriorAuthRequestError, load_notes, parse_pas_bundle, save_submission, scoped_id


def _entry(bundle, resource_type):
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type)


def _tables(store):
    # Every row of the resources and submissions tables, content included: "unchanged" means byte-identical.
    return store.db.read(lambda db: (
        db.rows("SELECT resource_type, id, content, content_sha256, updated_at FROM resources ORDER BY 1, 2"),
        db.rows("SELECT * FROM prior_auth_submissions ORDER BY claim_id, version"),
        db.rows("SELECT claim_id, version, user_id FROM prior_auth_submitters ORDER BY 1, 2, 3")))


def _save(store, bundle, **kwargs):
    return save_submission(store, bundle, parse_pas_bundle(bundle), **kwargs)


def _refused(store, bundle, **kwargs) -> PriorAuthRequestError:
    with pytest.raises(PriorAuthRequestError) as err:
        _save(store, bundle, **kwargs)
    return err.value


def test_a_changed_resubmission_is_refused_naming_each_difference_and_changes_nothing(store):
    """Quantity 14 -> 365, another Claim type and other note text under the same Claim id: 409-style conflict
    naming all three and the fix; the stored request, its notes and its submitters stay byte-identical."""
    request = make_pas_request(store, quantity=14)
    first = _save(store, request.bundle, submitted_by="intake-a")
    before, notes = _tables(store), load_notes(store, request.claim_id)
    claim = _entry(request.bundle, "Claim")
    claim["item"][0]["quantity"]["value"] = 365
    claim["type"]["coding"][0]["code"] = "institutional"
    note = _entry(request.bundle, "DocumentReference")
    note["content"][0]["attachment"]["data"] = base64.b64encode(b"Six weeks of therapy documented.").decode()
    err = _refused(store, request.bundle, submitted_by="intake-b")

    assert ("conflict", f"Claim/{request.claim_id} was already submitted (received "
            f"{first.record.received_at:%Y-%m-%d %H:%M} UTC) with other content: item 1 quantity 14 -> 365; Claim"
            f" type; DocumentReference {request.note_ids[0]} content. A submitted request is never changed and its"
            " run goes on with what was first submitted: send the change as a new request with a new Claim id (the"
            " PAS update path, a Claim related to this one, is not supported yet)") == (err.code, str(err))
    assert (before, notes) == (_tables(store), load_notes(store, request.claim_id))


def test_a_claim_id_reused_for_another_member_is_refused_and_the_first_run_reads_its_own_notes(store):
    """Member B's request under member A's Claim id is refused; A's Claim and notes are what A sent."""
    a = make_pas_request(store, notes=("member A's note",))
    b = make_pas_request(store, notes=("member B's note",))
    _save(store, a.bundle)
    before = _tables(store)
    _entry(b.bundle, "Claim")["id"] = a.claim_id
    err = _refused(store, b.bundle)

    assert ("conflict", f"Claim/{a.claim_id} was already submitted for another member: a Claim id names one"
            " request of one member, and a submitted request is never changed; send this request with a new Claim"
            " id") == (err.code, str(err))
    assert (before, ["member A's note"]) == (_tables(store), [n.text for n in load_notes(store, a.claim_id)])


def test_an_identical_resubmission_joins_and_records_its_submitter(store):
    """Same content again by someone else: nothing written but the second submitter, same record and ids."""
    request = make_pas_request(store)
    first = _save(store, request.bundle, submitted_by="intake-a", workflow_id="prior-auth-test-identical")
    resources = _tables(store)[0]
    again = _save(store, request.bundle, submitted_by="intake-b", workflow_id="prior-auth-test-identical")

    assert (False, first.record, first.submission, resources) == (again.created, again.record, again.submission,
                                                                  _tables(store)[0])
    assert ["intake-a", "intake-b"] == SubmissionStore(store.db).submitters("prior-auth-test-identical")


def test_a_resubmission_keeps_the_first_receipt_time(store):
    """The run's clock starts at the first receipt: a later identical resubmission answers that time."""
    from datetime import UTC, datetime

    request = make_pas_request(store)
    first = _save(store, request.bundle, received_at=datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    again = _save(store, request.bundle, received_at=datetime(2026, 3, 4, 9, 0, tzinfo=UTC))

    assert (datetime(2026, 3, 2, 15, 0, tzinfo=UTC),) * 2 == (first.submission.received_at,
                                                              again.submission.received_at)


def test_a_note_linked_to_another_claim_by_its_sender_is_not_read_by_that_claims_run(store):
    """Another request of the same member whose note claims to support A's Claim: A's run reads A's notes only."""
    a = make_pas_request(store, notes=("A's own note",))
    b = make_pas_request(store, member=a.member, notes=("planted note",))
    _entry(b.bundle, "DocumentReference")["context"] = {"related": [{"reference": f"Claim/{a.claim_id}"}]}
    _save(store, a.bundle)
    _save(store, b.bundle)

    assert ([scoped_id(a.claim_id, a.note_ids[0])], ["A's own note"]) == (
        [n.document_id for n in load_notes(store, a.claim_id)], [n.text for n in load_notes(store, a.claim_id)])


def test_the_submission_tables_refuse_updates_and_deletes(store):
    """Append-only in the database itself: a stored request cannot be rewritten behind the code's back."""
    request = make_pas_request(store)
    _save(store, request.bundle)
    for statement in ("UPDATE prior_auth_submissions SET content_sha256 = 'x' WHERE claim_id = :c",
                      "DELETE FROM prior_auth_submissions WHERE claim_id = :c",
                      "UPDATE prior_auth_submitters SET user_id = 'x' WHERE claim_id = :c"):
        with pytest.raises(StoreError, match="append-only"):
            store.db.write(lambda db, sql=statement: db.rows(sql, {"c": request.claim_id}))


# --- intake limits ---------------------------------------------------------------------------------------------


def test_a_3000_line_claim_is_refused_before_anything_else(store):
    """3,000 service lines: too_many_items naming the count, the limit and CARELOOM_PA_MAX_ITEMS."""
    request = make_pas_request(store, extra_codes=("72148",) * 2999)
    with pytest.raises(PriorAuthRequestError) as err:
        parse_pas_bundle(request.bundle)

    assert ("too_many_items", "entry[0] Claim has 3000 service lines (Claim.item); a request may carry at most 50"
            " (CARELOOM_PA_MAX_ITEMS): split it into requests of at most 50 lines, or raise CARELOOM_PA_MAX_ITEMS"
            ) == (err.value.code, str(err.value))


def test_a_700_kb_note_is_refused(store):
    """A 700,000-byte note: note_too_large naming its decoded size, the limit and CARELOOM_PA_MAX_NOTE_BYTES."""
    request = make_pas_request(store, notes=("x" * 700_000,))
    with pytest.raises(PriorAuthRequestError) as err:
        parse_pas_bundle(request.bundle)

    assert ("note_too_large", "has an attachment of 700,000 bytes (decoded); a note may have at most 200,000 bytes"
            " (CARELOOM_PA_MAX_NOTE_BYTES)") == (err.value.code, str(err.value).split(" DocumentReference ", 1)[1]
                                                 .split(": send", 1)[0])


def test_limits_follow_the_settings_and_count_notes(store):
    """Raised limits accept what the defaults refuse; more DocumentReferences than max_notes is too_many_notes."""
    request = make_pas_request(store, notes=MRI_NOTES_MET * 3)
    with pytest.raises(PriorAuthRequestError) as err:
        parse_pas_bundle(request.bundle, IntakeLimits(max_notes=2))

    assert "too_many_notes" == err.value.code
    assert str(err.value).startswith(f"the request carries {len(MRI_NOTES_MET) * 3} DocumentReferences; a request may"
                                     " carry at most 2 (CARELOOM_PA_MAX_NOTES)")
    big = make_pas_request(store, extra_codes=("72148",) * 59)
    assert 60 == len(parse_pas_bundle(big.bundle, IntakeLimits(max_items=60)).items)


def test_a_submission_is_one_access_log_row_and_one_log_line_without_phi(store):
    """record_intake writes who, what and the outcome; the log line carries no Claim, member or note id."""
    from datetime import UTC, datetime

    from structlog.testing import capture_logs

    from store.access_log import AccessLog
    from tools.pas_audit import record_intake, refusal_outcome

    request = make_pas_request(store)
    since = datetime.now(UTC)
    with capture_logs() as logs:
        record_intake(AccessLog(store.db), user_id="intake-log-test", role="rn", outcome=refusal_outcome("conflict"),
                      channel="api", workflow_id="prior-auth-0123", code="conflict")
    rows = AccessLog(store.db).entries(user_id="intake-log-test", since=since)

    assert [("prior_auth.submit", "rn", "refused:conflict", "prior-auth-0123")] == [
        (r.action, r.role, r.outcome, r.workflow_id) for r in rows]
    assert [{"event": "prior_auth.submit", "user_id": "intake-log-test", "role": "rn", "outcome": "refused:conflict",
             "channel": "api", "workflow_id": "prior-auth-0123", "code": "conflict", "log_level": "info"}] == logs
    assert not any(i in json.dumps(logs) for i in (request.claim_id, request.member_id, *request.note_ids))
    assert ("refused:limit", "refused:limit", "refused:invalid") == tuple(
        refusal_outcome(c) for c in ("too_many_items", "note_too_large", "missing_notes"))
