"""Intake of a Da Vinci PAS-style prior-authorization request Bundle.

:func:`parse_pas_bundle` turns the Bundle into a :class:`PriorAuthSubmission` of identifiers (what a
workflow may carry in its history); :func:`check_submission` checks it against the records store and
the medical policy; :func:`save_submission` stores the request's Claim, notes, Practitioner and
ServiceRequest in one transaction; :func:`load_notes` reads the note text back inside an activity.
Note text never leaves this module except as :class:`Note`, which must not go into history.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from store.fhir_validation import InvalidResource, validate_resource
from store.records import CareRecordStore, PutOutcome, member_of
from tools.criteria import CriteriaSet

__all__ = [
    "Note",
    "PriorAuthErrorCode",
    "PriorAuthRequestError",
    "PriorAuthSubmission",
    "RequestedService",
    "SavedSubmission",
    "check_submission",
    "load_notes",
    "parse_pas_bundle",
    "save_submission",
]

from runtime.errors import PriorAuthErrorCode, PriorAuthRequestError


class RequestedService(BaseModel):
    """One requested service line of the Claim."""

    sequence: int
    code: str = Field(description="CPT, HCPCS or revenue code from Claim.item.productOrService.")
    system: str = Field(description="The code's system URI as sent ('' when the submitter gave none).")
    quantity: int = Field(ge=1, description="Units, visits or days requested (1 when not sent).")


class PriorAuthSubmission(BaseModel):
    """A prior-authorization request as identifiers and dates: no clinical text, safe for history."""

    claim_id: str
    member_id: str = Field(description="The Patient id of the member.")
    coverage_id: str
    provider_id: str = Field(description="The requesting Practitioner's id.")
    priority: Literal["expedited", "standard"] = Field(
        description="expedited (72-hour clock) when Claim.priority is stat, else standard (7 days).")
    received_at: AwareDatetime = Field(description="Claim.created in UTC; a bare date is midnight UTC.")
    service_date: date
    items: list[RequestedService]
    note_ids: list[str] = Field(description="DocumentReference ids of the clinical notes, sorted.")


class Note(BaseModel):
    """A clinical note's decoded text. Activity-local: never put one in workflow history."""

    model_config = ConfigDict(frozen=True)

    document_id: str
    text: str


class SavedSubmission(BaseModel):
    """What :func:`save_submission` wrote, per resource reference."""

    claim_reference: str
    outcomes: dict[str, PutOutcome]

    @property
    def changed(self) -> bool:
        return any(outcome != "unchanged" for outcome in self.outcomes.values())


# Only what the plan must keep of the request: Patient and Coverage are the plan's own records and a
# provider's copy of them must never overwrite those.
_SAVED_TYPES = ("Claim", "DocumentReference", "Practitioner", "ServiceRequest")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


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


def _parse(bundle: Any) -> tuple[PriorAuthSubmission, list[_Entry], _References]:
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
    for entry in entries:
        if entry.type not in ("DocumentReference", "ServiceRequest"):
            continue
        where = f"entry[{entry.index}] {entry.type}"
        subject = refs.resolve(entry.resource.get("subject"), "Patient", f"{where}.subject")
        if subject != member_id:
            raise _invalid(f"{where}.subject is Patient/{subject}, not the Claim's patient Patient/{member_id}:"
                           " a request's documents must be about its member")
        if entry.type == "DocumentReference" and _note_text(entry.resource, where) is not None:
            note_ids.append(entry.resource["id"])
    if not note_ids:
        documents = sum(e.type == "DocumentReference" for e in entries)
        raise PriorAuthRequestError(
            "missing_notes", f"the request has no clinical notes with text ({documents} DocumentReference(s), none"
                             " with a text/plain attachment): attach the notes as DocumentReferences with"
                             " content.attachment contentType text/plain and base64 data")
    submission = PriorAuthSubmission(
        claim_id=claim["id"], member_id=member_id, coverage_id=coverage_id, provider_id=provider_id,
        priority="expedited" if "stat" in codes else "standard", received_at=received_at,
        service_date=min(service_dates) if service_dates else received_at.date(),
        items=items, note_ids=sorted(note_ids),
    )
    return submission, entries, refs


def parse_pas_bundle(bundle: dict[str, Any]) -> PriorAuthSubmission:
    """The submission a PAS request Bundle makes, or PriorAuthRequestError naming problem and fix."""
    return _parse(bundle)[0]


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


def _rewritten(value: Any, refs: _References) -> Any:
    if isinstance(value, dict):
        return {k: (refs.rewrite(v) if k == "reference" and isinstance(v, str) else _rewritten(v, refs))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_rewritten(v, refs) for v in value]
    return value


def _link_to_claim(store: CareRecordStore, document: dict[str, Any], claim_id: str) -> dict[str, Any]:
    # context.related ties a note to the request it supports, so load_notes finds it from the Claim
    # alone; links to other Claims already stored for the same document are kept.
    related = list(((store.get("DocumentReference", document["id"]) or {}).get("context") or {}).get("related") or [])
    for link in (document.get("context") or {}).get("related") or []:
        if link not in related:
            related.append(link)
    claim_link = {"reference": f"Claim/{claim_id}"}
    if claim_link not in related:
        related.append(claim_link)
    return {**document, "context": {**(document.get("context") or {}), "related": related}}


def save_submission(store: CareRecordStore, bundle: dict[str, Any],
                    submission: PriorAuthSubmission) -> SavedSubmission:
    """Store the request's Claim, notes, Practitioner and ServiceRequest in one transaction.

    All or nothing, and idempotent: the same Bundle again leaves every resource unchanged.
    References to Bundle entries by fullUrl are stored as Type/id.
    """
    parsed, entries, refs = _parse(bundle)
    if parsed != submission:
        raise _invalid(f"the submission for Claim/{submission.claim_id} was not parsed from this Bundle"
                       f" (Claim/{parsed.claim_id}): parse the Bundle again and save both together")
    _check_member_and_coverage(store, submission)
    resources: list[dict[str, Any]] = []
    for entry in entries:
        if entry.type not in _SAVED_TYPES:
            continue
        resource = _rewritten(entry.resource, refs)
        if entry.type == "DocumentReference":
            resource = _link_to_claim(store, resource, submission.claim_id)
        resources.append(validate_resource(resource))
    outcomes = store.put_many(resources)
    return SavedSubmission(
        claim_reference=f"Claim/{submission.claim_id}",
        outcomes={f"{r['resourceType']}/{r['id']}": o for r, o in zip(resources, outcomes, strict=True)},
    )


def load_notes(store: CareRecordStore, claim_id: str) -> list[Note]:
    """The decoded clinical notes of a saved request, by document id. Call it inside an activity."""
    claim = store.get("Claim", claim_id)
    if claim is None:
        raise PriorAuthRequestError(
            "unknown_claim", f"no Claim/{claim_id} in the records store: save the request (save_submission)"
                             " before reading its notes")
    link = {"reference": f"Claim/{claim_id}"}
    notes: list[Note] = []
    for document in store.find_for_member("DocumentReference", member_of(claim) or ""):
        if link not in ((document.get("context") or {}).get("related") or []):
            continue
        text = _note_text(document, f"DocumentReference/{document['id']}")
        if text is not None:
            notes.append(Note(document_id=document["id"], text=text))
    return sorted(notes, key=lambda note: note.document_id)
