"""Tests for tools.clinical: the index stay and what was known at discharge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from store.importer import import_ndjson
from tests.databases import fresh_store
from tests.fhir_factory import make_member
from tools.clinical import ClinicalContextInput, get_clinical_context, parse_instant

DISCHARGED = datetime(2024, 6, 10, 15, 0, tzinfo=UTC)
SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "fhir_r4"


def _context(store, member):
    return get_clinical_context(
        store, ClinicalContextInput(member_id=member.member_id, encounter_id=member.encounter_id))


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _ed_visit(member_id: str, eid: str, start: datetime, hours: int = 3) -> dict:
    return {
        "resourceType": "Encounter", "id": eid, "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
        "subject": {"reference": f"Patient/{member_id}"},
        "period": {"start": _iso(start), "end": _iso(start + timedelta(hours=hours))},
    }


def _condition(member_id: str, cid: str, code: str, recorded: datetime, **extra) -> dict:
    return {
        "resourceType": "Condition", "id": cid,
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]},
        "subject": {"reference": f"Patient/{member_id}"}, "recordedDate": _iso(recorded), **extra,
    }


def test_stay_facts_from_the_inpatient_encounter(store):
    """The index stay reports admission, discharge, length of stay in days, admit source and disposition."""
    member = make_member(store, los_days=5, discharged_at=DISCHARGED)
    stay = _context(store, member).stay

    assert (DISCHARGED - timedelta(days=5), DISCHARGED, 5, "emd", "home") == (
        stay.admitted_at, stay.discharged_at, stay.length_of_stay_days, stay.admit_source,
        stay.discharge_disposition)


def test_admission_from_emergency_department_is_acute(store):
    """admitSource emd makes the admission acute (LACE A = 3)."""
    member = make_member(store, admit_source="emd", discharged_at=DISCHARGED)

    assert True is _context(store, member).stay.acute_admission


def test_elective_admission_is_not_acute(store):
    """An elective admission (no emergency source, elective priority) is not acute."""
    member = make_member(discharged_at=DISCHARGED, admit_source="hosp-trans")
    for resource in member.resources:
        if resource["id"] == member.encounter_id:
            resource["priority"]["coding"][0]["code"] = "EL"
    store.put_many(member.resources)

    assert False is _context(store, member).stay.acute_admission


def test_unrecorded_admission_type_is_unknown_not_false(store):
    """Without admit source and priority, acute_admission is None (missing, never imputed)."""
    member = make_member(discharged_at=DISCHARGED, admit_source=None)
    for resource in member.resources:
        if resource["id"] == member.encounter_id:
            del resource["priority"]
    store.put_many(member.resources)

    assert None is _context(store, member).stay.acute_admission


@pytest.mark.parametrize("visits", [0, 1, 3, 5])
def test_ed_visits_before_admission_are_counted(store, visits):
    """ED visits in the 6 months before admission are counted; the ED visit that led to the admission is not."""
    member = make_member(store, ed_visits=visits, discharged_at=DISCHARGED)

    assert visits == _context(store, member).ed_visits_6mo


def test_index_ed_visit_alone_counts_zero(store):
    """The factory's member has only the ED visit that led to the admission: 0 ED visits."""
    member = make_member(store, ed_visits=0, discharged_at=DISCHARGED)
    ed_encounters = [r for r in member.resources if r["resourceType"] == "Encounter" and r["class"]["code"] == "EMER"]

    assert (1, 0) == (len(ed_encounters), _context(store, member).ed_visits_6mo)


def test_ed_visits_outside_the_182_day_lookback_are_not_counted(store):
    """An ED visit 181 days before admission counts; one 183 days before does not."""
    member = make_member(store, los_days=2, discharged_at=DISCHARGED)
    admitted = DISCHARGED - timedelta(days=2)
    store.put_many([_ed_visit(member.member_id, "enc-ed-181", admitted - timedelta(days=181)),
                    _ed_visit(member.member_id, "enc-ed-183", admitted - timedelta(days=183))])

    assert 1 == _context(store, member).ed_visits_6mo


def test_ed_visits_after_admission_are_not_counted(store):
    """An ED visit after the admission (e.g. after discharge) is not part of the look-back."""
    member = make_member(store, los_days=2, discharged_at=DISCHARGED)
    store.put_many([_ed_visit(member.member_id, "enc-ed-after", DISCHARGED + timedelta(days=3))])

    assert 0 == _context(store, member).ed_visits_6mo


def test_conditions_known_at_discharge_are_listed(store):
    """Condition codes recorded before discharge are listed, sorted and deduplicated."""
    member = make_member(store, codes=("I50.9", "E11.9", "I50.9"), discharged_at=DISCHARGED)

    assert ["E11.9", "I50.9"] == _context(store, member).condition_codes


def test_conditions_recorded_after_discharge_are_excluded(store):
    """Only data available at discharge is used: a condition recorded after discharge is left out."""
    member = make_member(store, codes=("I50.9",), discharged_at=DISCHARGED)
    store.put_many([_condition(member.member_id, "cond-late", "C78.0", DISCHARGED + timedelta(days=1),
                               onsetDateTime="2015-01-01")])

    assert ["I50.9"] == _context(store, member).condition_codes


def test_condition_recorded_during_the_stay_is_included(store):
    """A condition recorded during the stay (before discharge) is known at discharge."""
    member = make_member(store, discharged_at=DISCHARGED)
    store.put_many([_condition(member.member_id, "cond-stay", "J44.9", DISCHARGED - timedelta(hours=1))])

    assert ["J44.9"] == _context(store, member).condition_codes


def test_condition_abated_before_admission_is_excluded(store):
    """A condition that abated before the admission is not a current comorbidity."""
    member = make_member(store, los_days=2, discharged_at=DISCHARGED)
    store.put_many([_condition(member.member_id, "cond-old", "K25.9", DISCHARGED - timedelta(days=400),
                               abatementDateTime=_iso(DISCHARGED - timedelta(days=300)))])

    assert [] == _context(store, member).condition_codes


def test_other_members_conditions_are_not_used(store):
    """Conditions of another member never enter this member's context."""
    member = make_member(store, discharged_at=DISCHARGED)
    make_member(store, codes=("C78.0",), discharged_at=DISCHARGED)

    assert [] == _context(store, member).condition_codes


def test_still_admitted_stay_has_no_discharge(store):
    """A stay without period.end has discharged_at None and no length of stay."""
    member = make_member(store, still_admitted=True)
    stay = _context(store, member).stay

    assert (None, None, None) == (stay.discharged_at, stay.length_of_stay_days, stay.discharge_disposition)


def test_encounter_of_another_member_is_encounter_not_found(store):
    """Asking for member A with member B's encounter raises EncounterNotFound, non-retryable."""
    first, second = make_member(store), make_member(store)

    with pytest.raises(ApplicationError) as raised:
        get_clinical_context(store, ClinicalContextInput(member_id=first.member_id,
                                                         encounter_id=second.encounter_id))

    assert ("EncounterNotFound", True) == (raised.value.type, raised.value.non_retryable)


def test_unknown_encounter_is_encounter_not_found(store):
    """An encounter id that is not in the store raises EncounterNotFound."""
    member = make_member(store)

    with pytest.raises(ApplicationError) as raised:
        get_clinical_context(store, ClinicalContextInput(member_id=member.member_id, encounter_id="enc-none"))

    assert "EncounterNotFound" == raised.value.type


def test_emergency_encounter_as_trigger_is_not_an_inpatient_stay(store):
    """Post-discharge outreach needs an inpatient stay: an EMER encounter raises NotAnInpatientStay."""
    member = make_member(store)

    with pytest.raises(ApplicationError) as raised:
        get_clinical_context(store, ClinicalContextInput(member_id=member.member_id,
                                                         encounter_id=f"{member.encounter_id}-ed"))

    assert ("NotAnInpatientStay", True) == (raised.value.type, raised.value.non_retryable)


def test_unknown_member_is_member_not_found(store):
    """An unknown member id raises MemberNotFound."""
    with pytest.raises(ApplicationError) as raised:
        get_clinical_context(store, ClinicalContextInput(member_id="pt-none", encounter_id="enc-none"))

    assert "MemberNotFound" == raised.value.type


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-06-10T15:00:00Z", datetime(2024, 6, 10, 15, 0, tzinfo=UTC)),
    ("2024-06-10T11:00:00-04:00", datetime(2024, 6, 10, 15, 0, tzinfo=UTC)),
    ("2024-06-10", datetime(2024, 6, 10, 0, 0, tzinfo=UTC)),
    ("not a date", None),
    (None, None),
])
def test_parse_instant(value, expected):
    """FHIR dates and dateTimes become aware UTC datetimes; dates are midnight UTC; junk is None."""
    assert expected == parse_instant(value)


# --- real clinosim data ------------------------------------------------------

@pytest.fixture(scope="module")
def sample_store(tmp_path_factory):
    with fresh_store(tmp_path_factory.mktemp("sample"), "r.db") as records:
        import_ndjson(records, SAMPLE)
        yield records


@pytest.mark.parametrize(("member_id", "encounter_id", "los", "ed_visits"), [
    ("pt-9f210938d8b3", "enc-326fe6ebd0ee", 6, 1),   # earlier ED visit (of a February admission) counts
    ("pt-9f210938d8b3", "enc-676e9b4c7274", 4, 0),   # only the ED visit that led to the admission
    ("pt-22e73996cd95", "enc-13a08b6020c3", 5, 1),
    ("pt-79c7b06b2927", "enc-6c0c91168e1d", 38, 0),
])
def test_clinosim_stays(sample_store, member_id, encounter_id, los, ed_visits):
    """On clinosim data, the index ED visit (ending when the stay starts) is excluded and earlier ones count."""
    context = get_clinical_context(sample_store, ClinicalContextInput(member_id=member_id, encounter_id=encounter_id))

    assert (los, True, ed_visits) == (context.stay.length_of_stay_days, context.stay.acute_admission,
                                      context.ed_visits_6mo)


def test_clinosim_stay_still_in_hospital(sample_store):
    """clinosim's stay admitted 2024-12-31 has no discharge yet."""
    context = get_clinical_context(
        sample_store, ClinicalContextInput(member_id="pt-434de0d5ef8e", encounter_id="enc-deb68c19eabe"))

    assert (None, 1) == (context.stay.discharged_at, context.ed_visits_6mo)


def test_condition_entered_in_error_is_not_used(store):
    """A Condition whose verificationStatus is entered-in-error is not a comorbidity."""
    member = make_member(store, discharged_at=DISCHARGED)
    status = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                          "code": "entered-in-error"}]}
    store.put_many([_condition(member.member_id, "cond-error", "C78.0", DISCHARGED - timedelta(days=30),
                               verificationStatus=status)])

    assert [] == _context(store, member).condition_codes
