"""Synthetic FHIR R4 members and Da Vinci PAS request Bundles, shaped like clinosim's output.

The evaluation suite's generators (``data.member`` and ``data.request`` in a scenario; ``data.member`` with
``data.gaps`` for a care-gap closure case: :func:`gap_member_resources`) and the tests' factories both build
records here. Every builder is pure: the caller picks the ids (a tag) and the clock.
"""

from __future__ import annotations

import base64
import copy
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

__all__ = ["CPT", "GAP_CONDITIONS", "HCPCS", "HOME_HEALTH_NOTES_MET", "MRI_NOTES_AGAINST", "MRI_NOTES_MET",
           "MRI_NOTES_MISSING_THERAPY", "NOTES", "PV1_ADMISSION_TYPES", "REVENUE", "SNF_NOTES_MET",
           "adt_discharge_message", "build_pas_bundle", "code_system", "gap_member_resources", "member_resources",
           "synthea_bundle"]

def _encounter(eid: str, member_id: str, klass: str, start: datetime, end: datetime | None,
               admit_source: str | None = "emd", disposition: str | None = "home",
               priority: str | None = "") -> dict[str, Any]:
    enc: dict[str, Any] = {
        "resourceType": "Encounter", "id": eid, "status": "finished" if end else "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": klass},
        "subject": {"reference": f"Patient/{member_id}"},
        "period": {"start": start.isoformat().replace("+00:00", "Z")},
    }
    code = ("UR" if klass == "IMP" else "EM") if priority == "" else priority
    if code:
        enc["priority"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActPriority", "code": code}]}
    if end:
        enc["period"]["end"] = end.isoformat().replace("+00:00", "Z")
    hosp: dict[str, Any] = {}
    if admit_source:
        hosp["admitSource"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/admit-source",
                                           "code": admit_source}]}
    if disposition and end:
        hosp["dischargeDisposition"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/discharge-disposition", "code": disposition}]}
    if hosp:
        enc["hospitalization"] = hosp
    return enc


def _patient(member_id: str, tag: str, *, sex: str, birth_date: date, state: str | None, phone_use: str | None,
             email: bool, language: str | None, died: str | None) -> dict[str, Any]:
    """The member's Patient: address (its state sets the time zone), contact points, language, date of death."""
    patient: dict[str, Any] = {
        "resourceType": "Patient", "id": member_id, "active": died is None,
        "name": [{"family": f"Canary{tag}", "given": ["Testy"]}], "gender": sex, "birthDate": birth_date.isoformat(),
    }
    if state:
        patient["address"] = [{"use": "home", "line": ["1 Main St"], "city": "Worcester", "state": state}]
    telecom = []
    if phone_use:
        telecom.append({"system": "phone", "value": "(508) 555-0100", "use": phone_use})
    if email:
        telecom.append({"system": "email", "value": f"member-{tag}@example.org", "use": "home"})
    if telecom:
        patient["telecom"] = telecom
    if language:
        patient["communication"] = [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": language}]},
                                     "preferred": True}]
    if died is not None:
        patient["deceasedDateTime"] = died
    return patient


def _coverage(tag: str, member_id: str, status: str, plan: str, end: str) -> dict[str, Any]:
    return {
        "resourceType": "Coverage", "id": f"cov-test-{tag}", "status": status,
        "beneficiary": {"reference": f"Patient/{member_id}"}, "payor": [{"reference": "Organization/payer-x"}],
        "type": {"text": plan}, "period": {"start": "2020-01-01", "end": end},
    }


def _opt_out(tag: str, member_id: str) -> dict[str, Any]:
    """An active Consent denying outreach (the member opted out)."""
    return {
        "resourceType": "Consent", "id": f"consent-test-{tag}", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"text": "outreach contact preference"}],
        "patient": {"reference": f"Patient/{member_id}"},
        "provision": {"type": "deny"},
    }


def member_resources(
    tag: str,
    *,
    los_days: int = 2,
    discharged_at: datetime | None = None,
    still_admitted: bool = False,
    codes: tuple[str, ...] = (),
    ed_visits: int = 0,
    state: str | None = "MA",
    phone_use: str | None = "mobile",
    email: bool = False,
    opted_out: bool = False,
    deceased: bool = False,
    coverage_status: str = "active",
    coverage_type: str = "Medicare Advantage (Part C)",
    coverage_end: str = "2099-12-31",
    admit_source: str | None = "emd",
    priority: str | None = "UR",
    sex: str = "female",
    birth_date: date = date(1950, 5, 5),
    language: str | None = None,
    earlier_stays: int = 0,
) -> tuple[str, str, list[dict[str, Any]]]:
    """(member id, index encounter id, resources): one member with an inpatient stay.

    Defaults give LACE = L2 + A3 + C0 + E0 = 5 with no codes. ``priority`` is the stay's Encounter.priority
    (v3-ActPriority); with ``admit_source`` None too, the admission's acuity is unrecorded (LACE not scorable).
    ``earlier_stays``: more 2-day inpatient stays ending 1, 5, 9... days before the index admission
    (``enc-test-<tag>-prior<n>``), as a member with many hospital stays has.
    """
    member_id, encounter_id = f"pt-test-{tag}", f"enc-test-{tag}"
    discharged = discharged_at or datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    admitted = discharged - timedelta(days=los_days)
    patient = _patient(member_id, tag, sex=sex, birth_date=birth_date, state=state, phone_use=phone_use,
                       email=email, language=language,
                       died=(discharged + timedelta(days=3)).isoformat() if deceased else None)
    resources: list[dict[str, Any]] = [patient, _coverage(tag, member_id, coverage_status, coverage_type,
                                                          coverage_end)]
    resources.append(_encounter(encounter_id, member_id, "IMP", admitted, None if still_admitted else discharged,
                                admit_source=admit_source, priority=priority))
    for n in range(earlier_stays):
        end = admitted - timedelta(days=1 + 4 * n)
        resources.append(_encounter(f"enc-test-{tag}-prior{n}", member_id, "IMP", end - timedelta(days=2), end,
                                    admit_source=admit_source, priority=priority))
    # The ED visit that led to the admission: part of the index visit, never counted.
    resources.append(_encounter(f"enc-test-{tag}-ed", member_id, "EMER", admitted - timedelta(hours=3), admitted,
                                admit_source="outp", disposition=None))
    for n in range(ed_visits):
        start = admitted - timedelta(days=20 * (n + 1))
        resources.append(_encounter(f"enc-test-{tag}-ed{n}", member_id, "EMER", start, start + timedelta(hours=3),
                                    admit_source="outp"))
    for n, code in enumerate(codes):
        resources.append({
            "resourceType": "Condition", "id": f"cond-test-{tag}-{n}",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]},
            "subject": {"reference": f"Patient/{member_id}"},
            "onsetDateTime": "2015-01-01", "recordedDate": (admitted - timedelta(days=30)).isoformat(),
        })
    if opted_out:
        resources.append(_opt_out(tag, member_id))
    return member_id, encounter_id, resources


PV1_ADMISSION_TYPES = {"EM": "E", "UR": "U", "EL": "C", "R": "R"}
"""A stay's Encounter.priority (v3-ActPriority) → the PV1-4 admission type (HL7 table 0007) a hospital's ADT feed
sends for it: emergency, urgent, elective, routine. No priority: PV1-4 left empty."""
ADT_FACILITY = "EVAL_HOSPITAL"
"""MSH-4 of the evaluation's ADT messages (the listener's allow-list names it)."""


def _hl7_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


def adt_discharge_message(encounter: dict[str, Any], *, control_id: str, sent_at: datetime,
                          facility: str = ADT_FACILITY) -> str:
    """The HL7 v2.5.1 ADT^A03 a hospital's feed sends for a finished inpatient ``encounter`` (as
    :func:`member_resources` builds it): PID-3 the member, PV1-2 I, PV1-4 the admission type from its priority
    (:data:`PV1_ADMISSION_TYPES`; empty when it has none), PV1-19 the visit number, PV1-36 the UB-04 discharge
    status (01 home), PV1-44/45 admit and discharge times. Segments joined with CR, as on the wire.

    ``hospitalization.admitSource`` is not sent: careloom's mapping reads no PV1-14 (docs/adt-listener.md).
    """
    member_id = encounter["subject"]["reference"].split("/", 1)[1]
    period = encounter["period"]
    admitted = datetime.fromisoformat(period["start"].replace("Z", "+00:00"))
    discharged = datetime.fromisoformat(period["end"].replace("Z", "+00:00"))
    priority = next((c.get("code") for c in (encounter.get("priority") or {}).get("coding") or []), None)
    pv1 = ["PV1", "1", "I", "", PV1_ADMISSION_TYPES.get(priority or "", "")] + [""] * 14 + [encounter["id"]]
    pv1 += [""] * 16 + ["01"] + [""] * 7 + [_hl7_time(admitted), _hl7_time(discharged)]
    segments = [
        f"MSH|^~\\&|EVAL_ADT|{facility}|CARELOOM|PLAN|{_hl7_time(sent_at)}||ADT^A03^ADT_A03|{control_id}|P|2.5.1",
        f"EVN|A03|{_hl7_time(sent_at)}",
        f"PID|1||{member_id}^^^{facility}^MR||Synthetic^Member||19500505|F",
        "|".join(pv1),
    ]
    return "\r".join(segments) + "\r"


def _urn(tag: str, key: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'careloom-eval/{tag}/{key}')}"


def _to_urns(value: Any, urns: dict[str, str]) -> Any:  # noqa: ANN401 - any JSON value
    if isinstance(value, dict):
        return {k: (urns.get(v, v) if k == "reference" and isinstance(v, str) else _to_urns(v, urns))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_to_urns(v, urns) for v in value]
    return value


def synthea_bundle(resources: list[dict[str, Any]], tag: str) -> dict[str, Any]:
    """``resources`` as Synthea writes a patient: one ``transaction`` Bundle, each entry with a ``urn:uuid``
    fullUrl and a POST request, references between entries written as those ``urn:uuid``s (the importer rewrites
    them to ``Type/id``). The resources keep their ids, so the harness knows the member and the stay."""
    urns = {f"{r['resourceType']}/{r['id']}": _urn(tag, f"{r['resourceType']}/{r['id']}") for r in resources}
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": urns[f"{r['resourceType']}/{r['id']}"], "resource": _to_urns(copy.deepcopy(r), urns),
         "request": {"method": "POST", "url": r["resourceType"]}} for r in resources]}


LOINC, UCUM, ICD10 = "http://loinc.org", "http://unitsofmeasure.org", "http://hl7.org/fhir/sid/icd-10-cm"
GAP_CONDITIONS = {"E11.9": "type 2 diabetes (CMS122)", "I10": "essential hypertension (CMS165)"}
"""ICD-10-CM codes a generated care-gap member may carry, from the shipped measures' value sets."""


def _observation(oid: str, member_id: str, code: str, when: str, **value: Any) -> dict[str, Any]:  # noqa: ANN401
    """A final LOINC-coded Observation; ``value`` holds its valueQuantity or its components."""
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "subject": {"reference": f"Patient/{member_id}"}, "code": {"coding": [{"system": LOINC, "code": code}]}, "effectiveDateTime": when, **value}


def _mm_hg(code: str, value: int) -> dict[str, Any]:
    return {"code": {"coding": [{"system": LOINC, "code": code}]},
            "valueQuantity": {"value": value, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}}


def gap_member_resources(
    tag: str,
    *,
    period_start: date,
    conditions: tuple[str, ...] = ("E11.9",),
    office_visit: bool = True,
    hba1c: float | None = None,
    blood_pressure: tuple[int, int] | None = None,
    mammogram: bool = False,
    state: str | None = "MA",
    phone_use: str | None = "mobile",
    email: bool = False,
    opted_out: bool = False,
    deceased: bool = False,
    coverage_status: str = "active",
    coverage_type: str = "Medicare Advantage (Part C)",
    coverage_end: str = "2099-12-31",
    sex: str = "female",
    birth_date: date = date(1958, 7, 2),
    language: str | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """(member id, resources): one member as the quality measures see them, for a care-gap closure run.

    Conditions (ICD-10-CM, onset 2019-06-01, before any period the suite uses); ``office_visit``: a finished
    office visit (CPT 99213) 60 days into the measurement period; on that day too, ``hba1c`` (LOINC 4548-4, %),
    ``blood_pressure`` (LOINC 85354-9 with systolic 8480-6 and diastolic 8462-4 components) and ``mammogram``
    (a completed bilateral screening mammography, CPT 77067). No inpatient stay: a gap run does not need one.
    """
    member_id = f"pt-test-{tag}"
    day = datetime.combine(period_start + timedelta(days=60), datetime.min.time(), tzinfo=UTC) + timedelta(hours=9)
    when = day.isoformat().replace("+00:00", "Z")
    died = (day + timedelta(days=10)).isoformat().replace("+00:00", "Z") if deceased else None
    subject = {"reference": f"Patient/{member_id}"}
    resources: list[dict[str, Any]] = [
        _patient(member_id, tag, sex=sex, birth_date=birth_date, state=state, phone_use=phone_use, email=email,
                 language=language, died=died),
        _coverage(tag, member_id, coverage_status, coverage_type, coverage_end)]
    for n, code in enumerate(conditions):
        resources.append({
            "resourceType": "Condition", "id": f"cond-test-{tag}-{n}", "subject": subject,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": ICD10, "code": code}]}, "onsetDateTime": "2019-06-01"})
    if office_visit:
        resources.append({
            "resourceType": "Encounter", "id": f"enc-test-{tag}-office", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [{"coding": [{"system": CPT, "code": "99213"}]}], "subject": subject,
            "period": {"start": when, "end": (day + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")}})
    if hba1c is not None:
        resources.append(_observation(f"a1c-test-{tag}", member_id, "4548-4", when, valueQuantity={
            "value": hba1c, "unit": "%", "system": UCUM, "code": "%"}))
    if blood_pressure is not None:
        systolic, diastolic = blood_pressure
        resources.append(_observation(f"bp-test-{tag}", member_id, "85354-9", when,
                                      component=[_mm_hg("8480-6", systolic), _mm_hg("8462-4", diastolic)]))
    if mammogram:
        resources.append({"resourceType": "Procedure", "id": f"mammo-test-{tag}", "status": "completed",
                          "code": {"coding": [{"system": CPT, "code": "77067"}]}, "subject": subject,
                          "performedDateTime": when})
    if opted_out:
        resources.append(_opt_out(tag, member_id))
    return member_id, resources


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


NOTES: dict[str, tuple[str, ...]] = {
    "mri-met": MRI_NOTES_MET,
    "mri-missing-therapy": MRI_NOTES_MISSING_THERAPY,
    "mri-against": MRI_NOTES_AGAINST,
    "home-health-met": HOME_HEALTH_NOTES_MET,
    "snf-met": SNF_NOTES_MET,
    "none": (),
}
"""The clinical notes a generated request can carry, by name (scenario ``data.request.notes``)."""
