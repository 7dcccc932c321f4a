"""Intake of a Da Vinci PAS-style prior-authorization request Bundle.

:func:`parse_pas_bundle` checks the intake limits and turns the Bundle into a :class:`PriorAuthSubmission` of
identifiers (what a workflow may carry in its history); :func:`check_submission` checks it against the records
store and the medical policy; :func:`save_submission` stores the request once, as an immutable record: its
Claim, notes, QuestionnaireResponses, Practitioner and ServiceRequest with ids scoped to the submission
(:func:`scoped_id`), its content digest and its submitters, in one transaction; a resubmission with other content
is refused, never written.
:func:`load_notes` reads the note text back inside an activity. Note text never leaves this module except as
:class:`Note`, which must not go into history.

A completed DTR QuestionnaireResponse sent in the Bundle is cited evidence too (the provider's answers and who
attested them): it is stored with the request like a note (scoped id, in the digest), tied to the request's Claim
by the DTR ``qr-context`` extension (added when the submitter left it out: arriving inside the request Bundle ties
it to that request), and listed in ``questionnaire_response_ids``. A request needs notes with text or such a
response. The intake checks only that the response is valid FHIR, about the member and names no other request;
the evidence review checks its answers against the criteria in force (:func:`tools.qr_answers.check_response`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, Field

from store.fhir_validation import InvalidResource, validate_resource
from store.records import CareRecordStore, member_of
from store.sql_records import SqlCareRecordStore
from store.submissions import SubmissionRecord, SubmissionStore
from tools.criteria import CriteriaSet
from tools.pas_diff import SUBMITTED_ID_SYSTEM, differences
from tools.pas_limits import IntakeLimits, check_limits
from tools.pas_models import Note, PriorAuthSubmission, RequestedService
from tools.qr_answers import QR_CONTEXT

__all__ = [
    "Note",
    "PriorAuthErrorCode",
    "PriorAuthRequestError",
    "PriorAuthSubmission",
    "RequestedService",
    "SavedSubmission",
    "SubmissionConflict",
    "check_submission",
    "load_notes",
    "parse_pas_bundle",
    "save_submission",
    "scoped_id",
    "submission_scope",
]

from runtime.errors import PriorAuthErrorCode, PriorAuthRequestError


class SavedSubmission(BaseModel):
    """What :func:`save_submission` recorded, or found already recorded for an identical request."""

    submission: PriorAuthSubmission = Field(description="The run's input: stored (scoped) ids, first receipt.")
    record: SubmissionRecord
    created: bool = Field(description="False: the identical request was already stored; nothing was written.")


# Only what the plan must keep of the request: Patient and Coverage are the plan's own records and a
# provider's copy of them must never overwrite those.
_SAVED_TYPES = ("Claim", "DocumentReference", "Practitioner", "QuestionnaireResponse", "ServiceRequest")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_DEFAULT_LIMITS = IntakeLimits()


@dataclass(frozen=True)
class _Entry:
    index: int
    resource: dict[str, Any]
    full_url: str | None

    @property
    def type(self) -> str:
        return self.resource["resourceType"]

    @property
    def key(self) -> str:
        return f"{self.type}/{self.resource['id']}"


def _invalid(message: str) -> PriorAuthRequestError:
    return PriorAuthRequestError("invalid_resource", message)


def _entries(bundle: Any) -> list[_Entry]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        got = bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__
        raise PriorAuthRequestError(
            "not_a_bundle", f"expected a FHIR Bundle, got {got!r}: send the PAS request Bundle (type collection)"
                            " whose first entry is the Claim")
    if bundle.get("type") not in ("collection", "transaction"):
        raise PriorAuthRequestError(
            "not_prior_auth", f"Bundle.type is {bundle.get('type')!r}; a prior-authorization request is a"
                              " collection (Da Vinci PAS) or transaction Bundle: resend it with type collection")
    try:
        validate_resource({k: v for k, v in bundle.items() if k != "entry"})
    except InvalidResource as err:
        raise _invalid(f"the Bundle itself is not valid: {err}: fix it and resend") from None
    entries: list[_Entry] = []
    for index, entry in enumerate(bundle.get("entry") or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            raise _invalid(f"entry[{index}] has no resource: every entry of a PAS request carries one")
        resource = dict(entry["resource"])
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        if not resource.get("id"):
            # A transaction entry may leave the id to the server: its urn:uuid names it for us, stably.
            if not (full_url or "").startswith("urn:uuid:"):
                raise _invalid(f"entry[{index}] ({resource.get('resourceType')}) has no id and no urn:uuid"
                               " fullUrl: give the resource an id")
            resource["id"] = full_url.removeprefix("urn:uuid:")
        try:
            validate_resource(resource)
        except InvalidResource as err:
            raise _invalid(f"entry[{index}] is not valid: {err}: fix that resource and resend") from None
        entries.append(_Entry(index, resource, full_url))
    return entries


class _References:
    """Resolves references between the Bundle's entries (fullUrl or Type/id)."""

    def __init__(self, entries: list[_Entry]) -> None:
        self._by: dict[str, _Entry] = {}
        for entry in entries:
            self._by[entry.key] = entry
            if entry.full_url:
                self._by[entry.full_url] = entry

    def rewrite(self, reference: str) -> str:
        """The stored form of a reference: a fullUrl of an entry becomes Type/id."""
        entry = self._by.get(reference)
        return entry.key if entry else reference

    def resolve(self, value: Any, expected: str, where: str) -> str:
        """The id a Reference points at; it must be an ``expected`` resource."""
        reference = value.get("reference") if isinstance(value, dict) else None
        if not isinstance(reference, str):
            raise _invalid(f"{where} has no reference: point it at the {expected} entry of the Bundle")
        entry = self._by.get(reference)
        if entry is not None:
            if entry.type != expected:
                raise _invalid(f"{where} points at {entry.key}, not at a {expected}: fix the reference")
            return entry.resource["id"]
        rtype, _, rid = reference.partition("/")
        if rtype[:1].isupper() and _FHIR_ID.fullmatch(rid):
            if rtype != expected:
                raise _invalid(f"{where} points at {reference}, not at a {expected}: fix the reference")
            return rid
        raise _invalid(f"{where} = {reference!r} is not in the Bundle: add the {expected} entry, or reference"
                       f" it as {expected}/<id>")


def _instant(value: str) -> datetime:
    if len(value) == 10:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise _invalid(f"Claim.created = {value!r} is not a full date or date-time with a time zone: send e.g."
                       " 2026-03-02T14:05:00-05:00")
    return parsed.astimezone(UTC)


def _items(claim: dict[str, Any]) -> tuple[list[RequestedService], list[date]]:
    items: list[RequestedService] = []
    dates: list[date] = []
    for index, item in enumerate(claim.get("item") or []):
        where = f"Claim.item[{index}]"
        coding = next((c for c in (item.get("productOrService") or {}).get("coding") or [] if c.get("code")), None)
        if coding is None:
            raise _invalid(f"{where}.productOrService has no coded service: add a CPT, HCPCS or revenue code coding")
        quantity = (item.get("quantity") or {}).get("value", 1)
        if quantity != int(quantity) or quantity < 1:
            raise _invalid(f"{where}.quantity is {quantity}: request a whole number of units, visits or days")
        items.append(RequestedService(sequence=item["sequence"], code=coding["code"],
                                      system=coding.get("system") or "", quantity=int(quantity)))
        served = item.get("servicedDate") or (item.get("servicedPeriod") or {}).get("start")
        if served:
            dates.append(date.fromisoformat(served[:10]))
    if not items:
        raise _invalid("Claim.item is empty: list each requested service with its CPT, HCPCS or revenue code")
    sequences = [i.sequence for i in items]
    if len(set(sequences)) != len(sequences):
        raise _invalid(f"Claim.item sequences repeat ({sequences}): number each service line once")
    return items, dates


def _note_text(document: dict[str, Any], where: str) -> str | None:
    """The decoded text/plain attachments of a DocumentReference, or None when it has none."""
    parts: list[str] = []
    for content in document.get("content") or []:
        attachment = content.get("attachment") or {}
        kind = (attachment.get("contentType") or "").split(";")
        if kind[0].strip().lower() != "text/plain" or not attachment.get("data"):
            continue
        charset = next((p.split("=", 1)[1].strip() for p in kind[1:] if p.strip().startswith("charset=")), "utf-8")
        try:
            parts.append(base64.b64decode(attachment["data"], validate=True).decode(charset))
        except (binascii.Error, UnicodeDecodeError, LookupError):
            raise _invalid(f"{where} has a text/plain attachment that is not base64 {charset} text: encode the"
                           " note as base64 UTF-8") from None
    text = "\n\n".join(p for p in parts if p.strip())
    return text or None


def _qr_contexts(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The response's DTR qr-context extensions (the request it answers)."""
    extensions = response.get("extension") or []
    return [e for e in extensions if isinstance(e, dict) and e.get("url") == QR_CONTEXT]


def _check_response_entry(entry: _Entry, refs: _References, claim_id: str, member_id: str) -> None:
    """A QuestionnaireResponse of the request: about its member (when it names a subject) and naming no other
    request in its qr-context. Its answers are checked by the evidence review, against the criteria in force."""
    where = f"entry[{entry.index}] QuestionnaireResponse"
    if entry.resource.get("subject") is not None:
        subject = refs.resolve(entry.resource.get("subject"), "Patient", f"{where}.subject")
        if subject != member_id:
            raise _invalid(f"{where}.subject is Patient/{subject}, not the Claim's patient Patient/{member_id}:"
                           " a request's questionnaire responses must be about its member")
    for context in _qr_contexts(entry.resource):
        named = refs.resolve(context.get("valueReference"), "Claim", f"{where} extension {QR_CONTEXT}")
        if named != claim_id:
            raise _invalid(f"{where} answers Claim/{named} (its {QR_CONTEXT} extension), not this request's"
                           f" Claim/{claim_id}: send it with the request it answers, or point the extension at"
                           f" Claim/{claim_id}")


def _parse(bundle: Any, limits: IntakeLimits | None) -> tuple[PriorAuthSubmission, list[_Entry], _References]:
    if limits is not None:
        check_limits(bundle, limits)
    entries = _entries(bundle)
    refs = _References(entries)
    claims = [e for e in entries if e.type == "Claim"]
    if not claims:
        raise PriorAuthRequestError(
            "not_prior_auth", "this Bundle is not a prior-authorization request: it holds no Claim; a PAS request"
                              " carries one Claim with use 'preauthorization'")
    if len(claims) > 1:
        raise _invalid(f"the Bundle holds {len(claims)} Claims (entries {[c.index for c in claims]}): send one"
                       " prior-authorization request per Bundle")
    claim = claims[0].resource
    if claim["use"] != "preauthorization":
        raise PriorAuthRequestError(
            "not_prior_auth", f"this Bundle is not a prior-authorization request: Claim.use is {claim['use']!r};"
                              " send claims for payment to the claims intake, or set Claim.use to"
                              " 'preauthorization' for a prior-authorization request")
    if claim["status"] != "active":
        raise PriorAuthRequestError(
            "not_prior_auth", f"Claim.status is {claim['status']!r}: only an active request can be decided;"
                              " resend it with status active")
    member_id = refs.resolve(claim.get("patient"), "Patient", "Claim.patient")
    insurance = next((i for i in claim["insurance"] if i.get("focal")), claim["insurance"][0])
    coverage_id = refs.resolve(insurance.get("coverage"), "Coverage", "Claim.insurance.coverage")
    provider_id = refs.resolve(claim.get("provider"), "Practitioner", "Claim.provider")
    codes = {c.get("code") for c in (claim.get("priority") or {}).get("coding") or []}
    received_at = _instant(claim["created"])
    items, service_dates = _items(claim)
    note_ids: list[str] = []
    response_ids: list[str] = []
    for entry in entries:
        if entry.type == "QuestionnaireResponse":
            _check_response_entry(entry, refs, claim["id"], member_id)
            response_ids.append(entry.resource["id"])
            continue
        if entry.type not in ("DocumentReference", "ServiceRequest"):
            continue
        where = f"entry[{entry.index}] {entry.type}"
        subject = refs.resolve(entry.resource.get("subject"), "Patient", f"{where}.subject")
        if subject != member_id:
            raise _invalid(f"{where}.subject is Patient/{subject}, not the Claim's patient Patient/{member_id}:"
                           " a request's documents must be about its member")
        if entry.type == "DocumentReference" and _note_text(entry.resource, where) is not None:
            note_ids.append(entry.resource["id"])
    if not note_ids and not response_ids:
        documents = sum(e.type == "DocumentReference" for e in entries)
        raise PriorAuthRequestError(
            "missing_notes", f"the request has no clinical notes with text ({documents} DocumentReference(s), none"
                             " with a text/plain attachment) and no QuestionnaireResponse: attach the notes as"
                             " DocumentReferences with content.attachment contentType text/plain and base64 data,"
                             " or the completed DTR QuestionnaireResponse")
    submission = PriorAuthSubmission(
        claim_id=claim["id"], member_id=member_id, coverage_id=coverage_id, provider_id=provider_id,
        priority="expedited" if "stat" in codes else "standard", received_at=received_at,
        service_date=min(service_dates) if service_dates else received_at.date(),
        items=items, note_ids=sorted(note_ids), questionnaire_response_ids=sorted(response_ids),
    )
    return submission, entries, refs


def parse_pas_bundle(bundle: dict[str, Any], limits: IntakeLimits | None = _DEFAULT_LIMITS) -> PriorAuthSubmission:
    """The submission a PAS request Bundle makes, or PriorAuthRequestError naming problem and fix.

    ``limits`` (default: the settings' defaults) are checked first, on the raw Bundle; None skips them.
    The ids are as submitted: :func:`save_submission` returns the stored (scoped) ones the run is given.
    """
    return _parse(bundle, limits)[0]


def _check_member_and_coverage(store: CareRecordStore, submission: PriorAuthSubmission) -> None:
    if store.get("Patient", submission.member_id) is None:
        raise PriorAuthRequestError(
            "unknown_member", f"no member Patient/{submission.member_id} in the records store: check Claim.patient,"
                              " or import the member's records before the request")
    coverage = store.get("Coverage", submission.coverage_id)
    if coverage is None:
        raise PriorAuthRequestError(
            "unknown_coverage", f"no Coverage/{submission.coverage_id} in the records store: check"
                                " Claim.insurance.coverage against the member's coverage")
    if member_of(coverage) != submission.member_id:
        raise PriorAuthRequestError(
            "unknown_coverage", f"Coverage/{submission.coverage_id} belongs to Patient/{member_of(coverage)}, not to"
                                f" member Patient/{submission.member_id}: point Claim.insurance.coverage at the"
                                " member's own coverage")


def check_submission(store: CareRecordStore, submission: PriorAuthSubmission, criteria: CriteriaSet) -> None:
    """Refuse a request for an unknown member, a coverage not theirs, or a service no policy covers."""
    _check_member_and_coverage(store, submission)
    unknown = sorted({item.code for item in submission.items if criteria.policy_for(item.code) is None})
    if unknown:
        raise PriorAuthRequestError(
            "unknown_service_code", f"no medical policy of um-medical-policy {criteria.version} covers service code(s)"
                                    f" {', '.join(unknown)}; known codes: {', '.join(criteria.known_codes)}: check"
                                    " the code, or route the request to manual review")


def submission_scope(claim_id: str, version: int = 1) -> str:
    """The namespace of one stored version of a request: its resources' stored ids begin with it."""
    return "pa" + hashlib.sha256(f"Claim/{claim_id}#v{version}".encode()).hexdigest()[:12]


def scoped_id(claim_id: str, resource_id: str, version: int = 1) -> str:
    """The stored id of a resource the request carries (its Claim keeps its own id): another request's, or
    another member's, resource of the same id is another stored resource, so a run never reads it."""
    scope = submission_scope(claim_id, version)
    scoped = f"{scope}-{resource_id}"
    return scoped if len(scoped) <= 64 else f"{scope}-{hashlib.sha256(resource_id.encode()).hexdigest()[:40]}"


def _rewritten(value: Any, stored_key: dict[str, str], refs: _References) -> Any:
    if isinstance(value, dict):
        return {k: (stored_key.get(refs.rewrite(v), refs.rewrite(v)) if k == "reference" and isinstance(v, str)
                    else _rewritten(v, stored_key, refs)) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewritten(v, stored_key, refs) for v in value]
    return value


def _canonical(resource: dict[str, Any]) -> str:
    return json.dumps(resource, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _keep_submitted_id(resource: dict[str, Any], submitted: str) -> None:
    """Record the id as sent, so the stored copy still says which of the submitter's resources it is.

    A QuestionnaireResponse has at most one identifier: it gets this one only when the submitter sent none (its
    stored id still begins with the scope and ends with the id as sent, see :func:`scoped_id`)."""
    mine = {"system": SUBMITTED_ID_SYSTEM, "value": submitted}
    if resource["resourceType"] == "QuestionnaireResponse":
        resource.setdefault("identifier", mine)
    else:
        resource["identifier"] = [*(resource.get("identifier") or []), mine]


@dataclass(frozen=True)
class _Stored:
    """A request in the form it is stored: resources with scoped ids, their digest, the scoped submission."""

    resources: list[dict[str, Any]]
    digest: str
    submission: PriorAuthSubmission


def _stored_form(entries: list[_Entry], refs: _References, submission: PriorAuthSubmission,
                 version: int) -> _Stored:
    claim_id = submission.claim_id
    saved = [e for e in entries if e.type in _SAVED_TYPES]
    stored_key = {e.key: e.key if e.type == "Claim" else f"{e.type}/{scoped_id(claim_id, e.resource['id'], version)}"
                  for e in saved}
    resources: list[dict[str, Any]] = []
    for entry in sorted(saved, key=lambda e: (e.type != "Claim", e.key)):
        resource = _rewritten(entry.resource, stored_key, refs)
        if entry.type != "Claim":
            resource["id"] = stored_key[entry.key].split("/", 1)[1]
            _keep_submitted_id(resource, entry.resource["id"])
        if entry.type == "DocumentReference":
            # context.related ties the note to the one request it came with; links it was sent with stay.
            context = resource.get("context") or {}
            related = list(context.get("related") or [])
            if {"reference": f"Claim/{claim_id}"} not in related:
                related.append({"reference": f"Claim/{claim_id}"})
            resource["context"] = {**context, "related": related}
        if entry.type == "QuestionnaireResponse" and not _qr_contexts(resource):
            # Sent inside the request Bundle, it answers that request: say so, as the evidence review requires.
            resource["extension"] = [*(resource.get("extension") or []),
                                     {"url": QR_CONTEXT, "valueReference": {"reference": f"Claim/{claim_id}"}}]
        resources.append(validate_resource(resource))
    practitioner = f"Practitioner/{submission.provider_id}"
    scoped = submission.model_copy(update={
        "provider_id": stored_key.get(practitioner, practitioner).split("/", 1)[1],
        "note_ids": sorted(stored_key[f"DocumentReference/{n}"].split("/", 1)[1] for n in submission.note_ids),
        "questionnaire_response_ids": sorted(stored_key[f"QuestionnaireResponse/{r}"].split("/", 1)[1]
                                             for r in submission.questionnaire_response_ids),
    })
    digest = hashlib.sha256("\n".join(_canonical(r) for r in resources).encode()).hexdigest()
    return _Stored(resources=resources, digest=digest, submission=scoped)


class SubmissionConflict(PriorAuthRequestError):
    """A resubmission refused because the request is already stored otherwise (code ``conflict``)."""

    def __init__(self, message: str, workflow_id: str | None) -> None:
        super().__init__("conflict", message)
        self.workflow_id = workflow_id
        """The stored request's run, for the access log (None when unknown)."""


def _conflict(claim_id: str, existing: SubmissionRecord, changes: list[str]) -> SubmissionConflict:
    return SubmissionConflict((
        f"Claim/{claim_id} was already submitted (received {existing.received_at:%Y-%m-%d %H:%M} UTC) with other"
        f" content: {'; '.join(changes) or 'the stored resources differ'}. A submitted request is never changed"
        " and its run goes on with what was first submitted: send the change as a new request with a new Claim id"
        " (the PAS update path, a Claim related to this one, is not supported yet)"), existing.workflow_id)


def _compare(store: SqlCareRecordStore, existing: SubmissionRecord, stored: _Stored) -> None:
    """Refuse (conflict) a resubmission that is not identical to the stored request."""
    claim_id = stored.submission.claim_id
    if existing.member_id != stored.submission.member_id:
        raise SubmissionConflict((
            f"Claim/{claim_id} was already submitted for another member: a Claim id names one request of one"
            " member, and a submitted request is never changed; send this request with a new Claim id"),
            existing.workflow_id)
    if existing.content_sha256 != stored.digest:
        before = [r for r in (store.get(*key.split("/", 1)) for key in existing.resources) if r is not None]
        raise _conflict(claim_id, existing, differences(before, stored.resources))


def _refuse_stored(claim_id: str) -> Callable[[list[str]], Exception]:
    def refuse(keys: list[str]) -> Exception:
        return SubmissionConflict((
            f"{', '.join(keys)} of Claim/{claim_id} is already stored with other content (stored before requests"
            " were kept as versioned records): send this request with a new Claim id"), None)
    return refuse


def save_submission(store: SqlCareRecordStore, bundle: dict[str, Any], submission: PriorAuthSubmission, *,
                    submitted_by: str = "system", workflow_id: str | None = None,
                    received_at: datetime | None = None) -> SavedSubmission:
    """Store the request once, as an immutable record: its Claim, notes, QuestionnaireResponses, Practitioner and
    ServiceRequest (ids scoped to it), its content digest and its submitter, in one transaction.

    The same request again (identical content) changes nothing but adds its submitter to the request's
    submitters. Other content under the same Claim id, or the Claim id for another member, is refused
    (``conflict``, naming what differs) and nothing is written. The returned submission names the stored
    (scoped) ids and the time the request was first received.
    """
    parsed, entries, refs = _parse(bundle, None)
    if parsed != submission:
        raise _invalid(f"the submission for Claim/{submission.claim_id} was not parsed from this Bundle"
                       f" (Claim/{parsed.claim_id}): parse the Bundle again and save both together")
    _check_member_and_coverage(store, submission)
    submissions = SubmissionStore(store.db)
    stored = _stored_form(entries, refs, submission, version=1)
    existing = submissions.latest(submission.claim_id)
    created = existing is None
    if existing is None:
        now = datetime.now(UTC)
        existing = submissions.create(SubmissionRecord(
            claim_id=submission.claim_id, version=1, member_id=submission.member_id, workflow_id=workflow_id,
            content_sha256=stored.digest, resources=[f"{r['resourceType']}/{r['id']}" for r in stored.resources],
            received_at=received_at or now, submitted_at=now, submitted_by=submitted_by,
        ), stored.resources, _refuse_stored(submission.claim_id))
        if existing is None:  # another submission of this Claim id was recorded first: compare with it
            created = False
            existing = submissions.latest(submission.claim_id)
            if existing is None:
                raise RuntimeError(f"Claim/{submission.claim_id} was recorded by another writer but cannot be read")
    if not created:
        _compare(store, existing, stored)
        submissions.add_submitter(existing, submitted_by)
    return SavedSubmission(submission=stored.submission.model_copy(update={"received_at": existing.received_at}),
                           record=existing, created=created)


def load_notes(store: SqlCareRecordStore, claim_id: str) -> list[Note]:
    """The decoded clinical notes of a saved request, by stored document id. Call it inside an activity.

    The notes are those its submission record lists, read by their stored (scoped) ids: never another
    request's or another member's document that happens to share an id or link to the Claim.
    """
    claim = store.get("Claim", claim_id)
    if claim is None:
        raise PriorAuthRequestError(
            "unknown_claim", f"no Claim/{claim_id} in the records store: save the request (save_submission)"
                             " before reading its notes")
    record = SubmissionStore(store.db).latest(claim_id)
    if record is not None:
        documents = [d for d in (store.get("DocumentReference", i) for i in record.stored("DocumentReference")) if d]
    else:
        # A request saved before submissions were records (a run started then may still read it).
        link = {"reference": f"Claim/{claim_id}"}
        documents = [d for d in store.find_for_member("DocumentReference", member_of(claim) or "")
                     if link in ((d.get("context") or {}).get("related") or [])]
    notes: list[Note] = []
    for document in documents:
        text = _note_text(document, f"DocumentReference/{document['id']}")
        if text is not None:
            notes.append(Note(document_id=document["id"], text=text))
    return sorted(notes, key=lambda note: note.document_id)
