"""Features of one index inpatient stay, as known AT DISCHARGE, and its 30-day readmission label.

Everything a feature reads is dated on or before the discharge: the LACE parts come from
:func:`tools.clinical.get_clinical_context` (conditions recorded by the discharge, ED visits in the 6 months
before the admission) and :func:`tools.risk.lace_components`; Charlson categories from :mod:`tools.charlson`;
prior inpatient stays that started in the 365 days before the admission; the Patient's sex and age at discharge;
the plan type and dual status from the Coverage in force at the discharge; the discharge disposition. Records
dated after the discharge change no feature. The label is the only thing read after it: an inpatient stay
admitted in the 30 days after the discharge.

:data:`FEATURES` is the model's input, in order; a feature missing at scoring time is refused
(:class:`MissingFeature`), never imputed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from runtime.errors import CareloomError
from store.records import CareRecordStore
from tools.charlson import CHARLSON_CATEGORIES, charlson_categories, charlson_index
from tools.clinical import ClinicalContextInput, get_clinical_context, parse_instant
from tools.risk import lace_components

__all__ = ["AGE_BANDS", "DISPOSITIONS", "FEATURES", "PLAN_TYPES", "MissingFeature", "age_band", "plan_type",
           "readmitted_within_30_days", "require_features", "stay_features"]

INPATIENT_CLASSES = {"IMP", "ACUTE", "NONAC"}
PRIOR_LOOKBACK = timedelta(days=365)
READMISSION_WINDOW = timedelta(days=30)

AGE_BANDS = ("18-44", "45-64", "65-74", "75-84", "85+")
PLAN_TYPES = ("medicare_advantage", "dual", "medicaid", "commercial", "other")
DISPOSITIONS = ("home", "home_health", "snf", "rehab", "aadvice", "other")
"""Discharge dispositions kept apart (HL7 discharge-disposition codes; ``home_health`` is the generator's
``alt-home`` with home health; anything else is ``other``)."""
_DISPOSITION_CODES = {"home": "home", "alt-home": "home_health", "snf": "snf", "rehab": "rehab",
                      "aadvice": "aadvice"}

FEATURES: tuple[str, ...] = (
    "lace_l", "lace_a", "lace_c", "lace_e", "lace_total",
    "length_of_stay_days", "acute_admission", "ed_visits_6mo", "prior_inpatient_12mo", "charlson_index",
    *(f"charlson_{c}" for c in CHARLSON_CATEGORIES),
    "age_years", "age_band", "sex_female",
    *(f"plan_{p}" for p in PLAN_TYPES),
    *(f"disposition_{d}" for d in DISPOSITIONS),
)
"""The model's input columns, in this order (the manifest records them)."""

GROUP_COLUMNS = ("age_band_label", "sex", "plan_type")
"""Descriptive columns kept beside the features for subgroup figures (not model input)."""


class MissingFeature(CareloomError):
    """A feature the model needs is missing (or unknown) for a stay; it is never imputed."""

    def __init__(self, missing: list[str], where: str = "") -> None:
        self.missing = missing
        super().__init__(f"missing feature{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
                         f"{' for ' + where if where else ''}: the model scores only complete inputs "
                         "(nothing is imputed); fix the record or score with LACE")


def age_band(age: int) -> str:
    for band, upper in zip(AGE_BANDS, (45, 65, 75, 85), strict=False):
        if age < upper:
            return band
    return AGE_BANDS[-1]


def plan_type(coverage_text: str | None) -> str:
    """The plan type a Coverage's type text names (dual status first: a dual member is Medicare and Medicaid)."""
    text = (coverage_text or "").lower()
    if "dual" in text or ("medicare" in text and "medicaid" in text):
        return "dual"
    if "medicare" in text:
        return "medicare_advantage"
    if "medicaid" in text:
        return "medicaid"
    if "commercial" in text or "employer" in text or "marketplace" in text:
        return "commercial"
    return "other"


def _age(birth: str | None, on: date) -> int | None:
    try:
        born = date.fromisoformat((birth or "")[:10])
    except ValueError:
        return None
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _coverage_at(store: CareRecordStore, member_id: str, on: str) -> dict[str, Any] | None:
    """The member's Coverage in force at ``on`` (started on/before it, not ended before it)."""
    found = None
    for cov in store.find_for_member("Coverage", member_id):
        period = cov.get("period") or {}
        start, end = period.get("start"), period.get("end")
        if (start and start[:10] > on) or (end and end[:10] < on) or cov.get("status") == "entered-in-error":
            continue
        found = cov
    return found


def stay_features(store: CareRecordStore, member_id: str, encounter_id: str) -> dict[str, Any]:
    """The features of one finished index stay at its discharge, plus the subgroup columns.

    Raises :class:`MissingFeature` naming what the records lack (no discharge, unrecorded acuity, no sex or
    birth date); the tools' own errors (unknown member or stay) pass through.
    """
    context = get_clinical_context(store, ClinicalContextInput(member_id=member_id, encounter_id=encounter_id))
    stay = context.stay
    missing = [name for name, value in (("discharged_at", stay.discharged_at),
                                        ("length_of_stay_days", stay.length_of_stay_days),
                                        ("acute_admission", stay.acute_admission)) if value is None]
    patient = store.get("Patient", member_id) or {}
    sex = patient.get("gender")
    if sex not in ("female", "male"):
        missing.append("sex")
    if missing or stay.discharged_at is None or stay.length_of_stay_days is None:
        raise MissingFeature(missing or ["discharged_at"], f"stay {encounter_id}")
    discharged = stay.discharged_at
    age = _age(patient.get("birthDate"), discharged.date())
    if age is None:
        raise MissingFeature(["age_years"], f"stay {encounter_id}")
    codes = context.condition_codes
    cci = charlson_index(codes)
    parts = lace_components(stay.length_of_stay_days, bool(stay.acute_admission), cci, context.ed_visits_6mo)
    categories = charlson_categories(codes)
    prior = 0
    for other in store.find_for_member("Encounter", member_id,
                                       start_after=(stay.admitted_at - PRIOR_LOOKBACK).isoformat()):
        if other["id"] == encounter_id or (other.get("class") or {}).get("code") not in INPATIENT_CLASSES:
            continue
        start = parse_instant((other.get("period") or {}).get("start"))
        if start is not None and stay.admitted_at - PRIOR_LOOKBACK <= start < stay.admitted_at:
            prior += 1
    coverage = _coverage_at(store, member_id, discharged.date().isoformat())
    plan = plan_type(((coverage or {}).get("type") or {}).get("text"))
    disposition = _DISPOSITION_CODES.get(stay.discharge_disposition or "", "other")
    band = age_band(age)
    row: dict[str, Any] = {
        "lace_l": parts.l, "lace_a": parts.a, "lace_c": parts.c, "lace_e": parts.e, "lace_total": parts.total,
        "length_of_stay_days": stay.length_of_stay_days, "acute_admission": int(bool(stay.acute_admission)),
        "ed_visits_6mo": context.ed_visits_6mo, "prior_inpatient_12mo": prior, "charlson_index": cci,
        **{f"charlson_{c}": int(c in categories) for c in CHARLSON_CATEGORIES},
        "age_years": age, "age_band": AGE_BANDS.index(band), "sex_female": int(sex == "female"),
        **{f"plan_{p}": int(p == plan) for p in PLAN_TYPES},
        **{f"disposition_{d}": int(d == disposition) for d in DISPOSITIONS},
    }
    assert tuple(row) == FEATURES  # noqa: S101 - the order is the model's contract
    return row | {"age_band_label": band, "sex": sex, "plan_type": plan}


def readmitted_within_30_days(store: CareRecordStore, member_id: str, encounter_id: str) -> bool:
    """The label: an inpatient stay (another Encounter) admitted after the discharge and within 30 days of it."""
    encounter = store.get("Encounter", encounter_id) or {}
    discharged = parse_instant((encounter.get("period") or {}).get("end"))
    if discharged is None:
        raise MissingFeature(["discharged_at"], f"stay {encounter_id} (no label without a discharge)")
    for other in store.find_for_member("Encounter", member_id, start_after=discharged.date().isoformat()):
        if other["id"] == encounter_id or (other.get("class") or {}).get("code") not in INPATIENT_CLASSES:
            continue
        start = parse_instant((other.get("period") or {}).get("start"))
        if start is not None and discharged < start <= discharged + READMISSION_WINDOW:
            return True
    return False


def require_features(values: Mapping[str, Any], features: tuple[str, ...] | list[str] = FEATURES,
                     where: str = "") -> list[float]:
    """``values`` as the model's input row, in ``features`` order; any missing or None feature is refused."""
    missing = [f for f in features if values.get(f) is None]
    if missing:
        raise MissingFeature(missing, where)
    return [float(values[f]) for f in features]
