"""Da Vinci PAS-style prior-authorization request Bundles for tests (and the shipped samples).

:func:`build_pas_bundle` is pure; :func:`make_pas_request` first stores a member (Patient and
Coverage, through tests.fhir_factory) and builds a request for them. Every call has its own ids.
"""

from __future__ import annotations

import base64
import copy
import uuid
from dataclasses import dataclass, field
from typing import Any

from store.records import CareRecordStore
from tests.fhir_factory import Member, make_member

__all__ = [
    "HOME_HEALTH_NOTES_MET",
    "MRI_NOTES_AGAINST",
    "MRI_NOTES_MET",
    "MRI_NOTES_MISSING_THERAPY",
    "PasRequest",
    "SNF_NOTES_MET",
    "build_pas_bundle",
    "code_system",
    "make_pas_request",
]

CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://bluebutton.cms.gov/resources/codesystem/hcpcs"
REVENUE = "https://www.nubc.org/CodeSystem/RevenueCodes"

MRI_NOTES_MET = (
    "Spine clinic progress note. Low back pain radiating to the left leg for 4 months. Completed 8 weeks of "
    "physical therapy and NSAIDs; symptoms persist despite therapy.\n"
    "Neurological examination: straight leg raise positive on the left at 40 degrees, diminished left ankle "
    "reflex, 4/5 ankle dorsiflexion (motor weakness).\n"
    "Assessment: left L5 radiculopathy. Plan: MRI lumbar spine without contrast before surgical referral.",
)
"""A lumbar MRI request meeting every criterion of the shipped policy."""

MRI_NOTES_MISSING_THERAPY = (
    "Back pain with left leg radiation for 3 months. Has tried physical therapy in the past; dates and "
    "duration are not in our records.\n"
    "Neurological examination: positive straight leg raise on the left. Assessment: left L5 radiculopathy.",
)
"""Neurological findings documented, the duration of conservative therapy not: a pend."""

MRI_NOTES_AGAINST = (
    "Acute low back pain for 10 days after lifting boxes. No radiculopathy. Denies bowel or bladder "
    "dysfunction, no saddle anesthesia.\n"
    "Neurological examination normal: strength 5/5 in both legs. Has not started physical therapy or NSAIDs. "
    "Requests an MRI for reassurance.",
)
"""Evidence against: red flags denied, no conservative therapy yet."""

HOME_HEALTH_NOTES_MET = (
    "Face-to-face encounter on 2024-11-18 for wound dehiscence after a left below-knee amputation.\n"
    "The patient is homebound: leaving home requires a considerable and taxing effort with a wheelchair "
    "and two-person assist.\n"
    "Needs skilled nursing visits for wound care and wound vac changes three times a week, and IV "
    "antibiotics through a PICC line for 4 weeks.",
)
"""A home health request meeting every criterion."""

SNF_NOTES_MET = (
    "Admitted 2024-06-17 for repair of a left hip fracture; inpatient for 5 days, a qualifying inpatient stay.\n"
    "Requires daily physical therapy and daily skilled nursing for wound care and anticoagulation monitoring.\n"
    "Lives alone with no caregiver; this care cannot safely be provided at home.",
)
"""An SNF admission request meeting every criterion."""


def code_system(code: str) -> str:
    """The code system a service code belongs to, by its shape (CPT 5 digits, revenue 4, HCPCS letter+4)."""
    if code.isdigit():
        return CPT if len(code) == 5 else REVENUE
    return HCPCS


def _note(note_id: str, member_ref: str, text: str, written: str) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference", "id": note_id, "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}]},
        "subject": {"reference": member_ref}, "date": written,
        "content": [{"attachment": {"contentType": "text/plain",
                                    "data": base64.b64encode(text.encode()).decode()}}],
    }


def build_pas_bundle(
    *,
    patient: dict[str, Any],
    coverage: dict[str, Any],
    tag: str,
    service_code: str = "72148",
    extra_codes: tuple[str, ...] = (),
    quantity: int = 1,
    priority: str = "normal",
    notes: tuple[str, ...] | list[str] = MRI_NOTES_MET,
    claim_use: str = "preauthorization",
    created: str = "2026-03-02T14:05:00-05:00",
    serviced_date: str | None = "2026-03-09",
    bundle_type: str = "collection",
    with_service_request: bool = True,
) -> dict[str, Any]:
    """A PAS request Bundle: Claim first, then Patient, Coverage, Practitioner, ServiceRequest, notes."""
    member_ref = f"Patient/{patient['id']}"
    note_ids = [f"note-{tag}-{n}" for n in range(len(notes))]
    items = []
    for sequence, code in enumerate((service_code, *extra_codes), start=1):
        item: dict[str, Any] = {"sequence": sequence,
                                "productOrService": {"coding": [{"system": code_system(code), "code": code}]},
                                "quantity": {"value": quantity}}
        if serviced_date:
            item["servicedDate"] = serviced_date
        items.append(item)
    institutional = service_code.isdigit() and len(service_code) == 4
    claim: dict[str, Any] = {
        "resourceType": "Claim", "id": f"claim-{tag}", "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type",
                             "code": "institutional" if institutional else "professional"}]},
        "use": claim_use, "patient": {"reference": member_ref}, "created": created,
        "provider": {"reference": f"Practitioner/prac-{tag}"},
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority",
                                 "code": priority}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": f"Coverage/{coverage['id']}"}}],
        "supportingInfo": [
            {"sequence": n, "category": {"coding": [{
                "system": "http://hl7.org/fhir/us/davinci-pas/CodeSystem/PASSupportingInfoType",
                "code": "additionalInformation"}]},
             "valueReference": {"reference": f"DocumentReference/{note_id}"}}
            for n, note_id in enumerate(note_ids, start=1)],
        "item": items,
    }
    practitioner = {
        "resourceType": "Practitioner", "id": f"prac-{tag}",
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
        "name": [{"family": "Okafor", "given": ["Ada"], "prefix": ["Dr."]}],
    }
    resources: list[dict[str, Any]] = [claim, patient, coverage, practitioner]
    if with_service_request:
        resources.append({
            "resourceType": "ServiceRequest", "id": f"sr-{tag}", "status": "active", "intent": "order",
            "code": {"coding": [{"system": code_system(service_code), "code": service_code}]},
            "subject": {"reference": member_ref}, "requester": {"reference": f"Practitioner/prac-{tag}"},
            "authoredOn": created,
        })
    instant = created if "T" in created else f"{created}T00:00:00Z"  # DocumentReference.date is an instant
    resources += [_note(note_id, member_ref, text, instant) for note_id, text in zip(note_ids, notes, strict=True)]
    return {
        "resourceType": "Bundle", "id": f"pas-{tag}", "type": bundle_type,
        "identifier": {"system": "urn:example:provider:pas-request", "value": tag},
        "timestamp": instant,
        "entry": [{"fullUrl": f"http://provider.example/fhir/{r['resourceType']}/{r['id']}", "resource": r}
                  for r in resources],
    }


@dataclass
class PasRequest:
    """A request Bundle and the ids it carries."""

    bundle: dict[str, Any]
    member: Member
    claim_id: str
    member_id: str
    coverage_id: str
    provider_id: str
    note_ids: list[str] = field(default_factory=list)


def make_pas_request(
    store: CareRecordStore | None = None,
    *,
    member: Member | None = None,
    unknown_member: bool = False,
    unknown_coverage: bool = False,
    omit_notes: bool = False,
    **options: Any,
) -> PasRequest:
    """A request for a member stored in ``store`` (made here unless given); options go to build_pas_bundle."""
    tag = uuid.uuid4().hex[:10]
    member = member or make_member(store)
    patient = copy.deepcopy(member.resources[0])
    coverage = copy.deepcopy(next(r for r in member.resources if r["resourceType"] == "Coverage"))
    if unknown_member:
        patient["id"] = f"pt-unknown-{tag}"
        coverage["beneficiary"] = {"reference": f"Patient/{patient['id']}"}
    if unknown_coverage:
        coverage["id"] = f"cov-unknown-{tag}"
    if omit_notes:
        options["notes"] = ()
    bundle = build_pas_bundle(patient=patient, coverage=coverage, tag=tag, **options)
    notes = options.get("notes", MRI_NOTES_MET)
    return PasRequest(bundle=bundle, member=member, claim_id=f"claim-{tag}", member_id=patient["id"],
                      coverage_id=coverage["id"], provider_id=f"prac-{tag}",
                      note_ids=[f"note-{tag}-{n}" for n in range(len(notes))])
