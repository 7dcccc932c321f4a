"""``get_clinical_context``: the index inpatient stay and what was known at discharge.

Only data available at discharge is used: conditions recorded (or with onset)
on or before the discharge time, and ED visits in the 6 months before the
admission. The ED visit that led to the admission (ending within 24 hours
before it) is part of the index visit and is not counted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from store.records import CareRecordStore, member_of
from tools.errors import ENCOUNTER_NOT_FOUND, MEMBER_NOT_FOUND, NOT_AN_INPATIENT_STAY, tool_error
from tools.time_zones import member_time_zone

__all__ = ["ClinicalContext", "ClinicalContextInput", "IndexStay", "get_clinical_context", "parse_instant"]

_INPATIENT_CLASSES = {"IMP", "ACUTE", "NONAC"}
_EMERGENCY_CLASSES = {"EMER"}
_EMERGENT_PRIORITIES = {"EM", "UR", "A", "S"}
_NOT_A_DIAGNOSIS = {"entered-in-error", "refuted"}
_ED_LOOKBACK = timedelta(days=182)
_INDEX_ED_GAP = timedelta(hours=24)
_MAX_CODES = 60


def parse_instant(value: str | None) -> datetime | None:
    """A FHIR date or dateTime as an aware UTC datetime (dates are midnight UTC)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _code(concept: dict[str, Any] | None) -> str | None:
    for coding in (concept or {}).get("coding") or []:
        if coding.get("code"):
            return coding["code"]
    return None


class ClinicalContextInput(BaseModel):
    member_id: str
    encounter_id: str = Field(description="The discharge (inpatient) Encounter.id that triggered outreach.")


class IndexStay(BaseModel):
    encounter_id: str
    admitted_at: datetime
    discharged_at: datetime | None = Field(description="None while the member is still in hospital.")
    length_of_stay_days: int | None = Field(description="Calendar days from admission to discharge.")
    admit_source: str | None = Field(description="HL7 admit-source code, e.g. emd.")
    acute_admission: bool | None = Field(description="Emergent/urgent admission; None if unrecorded.")
    discharge_disposition: str | None = Field(description="HL7 discharge-disposition code, e.g. home.")


class ClinicalContext(BaseModel):
    """Compact facts for risk and planning: codes and counts, not clinical notes."""

    member_id: str
    stay: IndexStay
    condition_codes: list[str] = Field(description="ICD-10-CM codes known at discharge (deduplicated).")
    ed_visits_6mo: int = Field(description="ED visits in the 182 days before admission, index visit excluded.")


def _acute(encounter: dict[str, Any]) -> bool | None:
    source = _code((encounter.get("hospitalization") or {}).get("admitSource"))
    priority = _code(encounter.get("priority"))
    if source is None and priority is None:
        return None
    return source == "emd" or priority in _EMERGENT_PRIORITIES


def get_clinical_context(store: CareRecordStore, data: ClinicalContextInput) -> ClinicalContext:
    patient = store.get("Patient", data.member_id)
    if patient is None:
        raise tool_error(MEMBER_NOT_FOUND, f"no Patient with id {data.member_id!r} in the care records store")
    encounter = store.get("Encounter", data.encounter_id)
    if encounter is None or member_of(encounter) != data.member_id:
        raise tool_error(
            ENCOUNTER_NOT_FOUND,
            f"no Encounter {data.encounter_id!r} for member {data.member_id!r}; check both ids",
        )
    klass = (encounter.get("class") or {}).get("code")
    period = encounter.get("period") or {}
    admitted = parse_instant(period.get("start"))
    if klass not in _INPATIENT_CLASSES or admitted is None:
        raise tool_error(
            NOT_AN_INPATIENT_STAY,
            f"Encounter {data.encounter_id!r} is class {klass!r} without an admission time; "
            "post-discharge outreach needs an inpatient stay (IMP)",
        )
    discharged = parse_instant(period.get("end"))
    hospitalization = encounter.get("hospitalization") or {}
    # Calendar days in local time (the member's zone stands in for the hospital's): a stay
    # from 23:30 to 10:00 the next morning is one day, whatever UTC says.
    zone = ZoneInfo(member_time_zone(patient)[0])
    stay = IndexStay(
        encounter_id=data.encounter_id,
        admitted_at=admitted,
        discharged_at=discharged,
        length_of_stay_days=(
            (discharged.astimezone(zone).date() - admitted.astimezone(zone).date()).days if discharged else None
        ),
        admit_source=_code(hospitalization.get("admitSource")),
        acute_admission=_acute(encounter),
        discharge_disposition=_code(hospitalization.get("dischargeDisposition")),
    )
    known_at = discharged or admitted
    codes: list[str] = []
    for condition in store.find_for_member("Condition", data.member_id):
        recorded = parse_instant(condition.get("recordedDate")) or parse_instant(condition.get("onsetDateTime"))
        if recorded is None or recorded > known_at:
            continue
        if _code(condition.get("verificationStatus")) in _NOT_A_DIAGNOSIS:
            continue
        abated = parse_instant(condition.get("abatementDateTime"))
        if abated is not None and abated < admitted:
            continue
        code = _code(condition.get("code"))
        if code and code not in codes:
            codes.append(code)
    ed_visits = 0
    for other in store.find_for_member(
        "Encounter", data.member_id, start_after=(admitted - _ED_LOOKBACK).isoformat(),
    ):
        if other["id"] == data.encounter_id or (other.get("class") or {}).get("code") not in _EMERGENCY_CLASSES:
            continue
        start = parse_instant((other.get("period") or {}).get("start"))
        end = parse_instant((other.get("period") or {}).get("end")) or start
        if start is None or start >= admitted or start < admitted - _ED_LOOKBACK:
            continue
        if end is not None and end >= admitted - _INDEX_ED_GAP:
            continue  # the ED visit that led to this admission
        ed_visits += 1
    return ClinicalContext(
        member_id=data.member_id, stay=stay, condition_codes=sorted(codes)[:_MAX_CODES], ed_visits_6mo=ed_visits
    )
