"""Synthetic FHIR R4 members for tests, shaped like clinosim's output (see sample_data/README.md).

Every test makes its own members with unique ids, so tests never share records.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from store.records import CareRecordStore

__all__ = ["HIGH_RISK", "Member", "make_member"]

HIGH_RISK = {"los_days": 7, "codes": ("I50.9",), "ed_visits": 1}
"""A high readmission risk discharge: L5 A3 C1 E1 = LACE 10."""


@dataclass
class Member:
    member_id: str
    encounter_id: str
    resources: list[dict[str, Any]] = field(default_factory=list)


def _encounter(eid: str, member_id: str, klass: str, start: datetime, end: datetime | None,
               admit_source: str | None = "emd", disposition: str | None = "home") -> dict[str, Any]:
    enc: dict[str, Any] = {
        "resourceType": "Encounter", "id": eid, "status": "finished" if end else "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": klass},
        "subject": {"reference": f"Patient/{member_id}"},
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActPriority",
                                 "code": "UR" if klass == "IMP" else "EM"}]},
        "period": {"start": start.isoformat().replace("+00:00", "Z")},
    }
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


def make_member(
    store: CareRecordStore | None = None,
    *,
    los_days: int = 2,
    discharged_at: datetime | None = None,
    still_admitted: bool = False,
    codes: tuple[str, ...] = (),
    ed_visits: int = 0,
    state: str | None = "MA",
    phone_use: str | None = "mobile",
    opted_out: bool = False,
    deceased: bool = False,
    coverage_status: str = "active",
    coverage_type: str = "Medicare Advantage (Part C)",
    coverage_end: str = "2099-12-31",
    admit_source: str | None = "emd",
    tag: str | None = None,
) -> Member:
    """One member with an inpatient stay (and what the scenario needs); stored if a store is given.

    Defaults give LACE = L2 + A3 + C0 + E0 = 5 with no codes.
    """
    tag = tag or uuid.uuid4().hex[:10]
    member_id, encounter_id = f"pt-test-{tag}", f"enc-test-{tag}"
    discharged = discharged_at or datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    admitted = discharged - timedelta(days=los_days)
    patient: dict[str, Any] = {
        "resourceType": "Patient", "id": member_id, "active": not deceased,
        "name": [{"family": f"Canary{tag}", "given": ["Testy"]}], "gender": "female", "birthDate": "1950-05-05",
    }
    if state:
        patient["address"] = [{"use": "home", "line": ["1 Main St"], "city": "Worcester", "state": state}]
    if phone_use:
        patient["telecom"] = [{"system": "phone", "value": "(508) 555-0100", "use": phone_use}]
    if deceased:
        patient["deceasedDateTime"] = (discharged + timedelta(days=3)).isoformat()
    resources: list[dict[str, Any]] = [patient]
    resources.append({
        "resourceType": "Coverage", "id": f"cov-test-{tag}", "status": coverage_status,
        "beneficiary": {"reference": f"Patient/{member_id}"}, "payor": [{"reference": "Organization/payer-x"}],
        "type": {"text": coverage_type}, "period": {"start": "2020-01-01", "end": coverage_end},
    })
    resources.append(_encounter(encounter_id, member_id, "IMP", admitted, None if still_admitted else discharged,
                                admit_source=admit_source))
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
        resources.append({
            "resourceType": "Consent", "id": f"consent-test-{tag}", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"text": "outreach contact preference"}],
            "patient": {"reference": f"Patient/{member_id}"},
            "provision": {"type": "deny"},
        })
    member = Member(member_id=member_id, encounter_id=encounter_id, resources=resources)
    if store is not None:
        store.put_many(resources)
    return member
