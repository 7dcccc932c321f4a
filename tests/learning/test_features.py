"""Features at the discharge date (nothing after it) and the 30-day readmission label, on hand-built members."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from learning.features import (FEATURES, MissingFeature, age_band, plan_type, readmitted_within_30_days,
                               require_features, stay_features)
from store.sql_records import SqlCareRecordStore
from tests.fhir_factory import HIGH_RISK, make_member
from tools.risk import RiskInput, score_readmission_risk

DISCHARGED = datetime(2025, 3, 10, 15, 0, tzinfo=UTC)


@pytest.fixture
def records(tmp_path: Path) -> SqlCareRecordStore:
    store = SqlCareRecordStore(tmp_path / "records.db")
    yield store
    store.close()


def _z(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _stay(eid: str, member_id: str, klass: str, start: datetime, days: float = 3) -> dict:
    return {"resourceType": "Encounter", "id": eid, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": klass},
            "subject": {"reference": f"Patient/{member_id}"},
            "period": {"start": _z(start), "end": _z(start + timedelta(days=days))}}


def test_features_match_lace_and_the_member(records: SqlCareRecordStore) -> None:
    member = make_member(records, discharged_at=DISCHARGED, earlier_stays=2, birth_date=date(1940, 6, 1),
                         coverage_type="Medicare + Medicaid (dual eligible)", **HIGH_RISK)
    row = stay_features(records, member.member_id, member.encounter_id)
    assert tuple(k for k in row if k in FEATURES) == FEATURES
    lace = score_readmission_risk(RiskInput(length_of_stay_days=7, acute_admission=True, condition_codes=["I50.9"],
                                            ed_visits_6mo=1))
    assert (row["lace_l"], row["lace_a"], row["lace_c"], row["lace_e"], row["lace_total"]) == (
        lace.components.l, lace.components.a, lace.components.c, lace.components.e, lace.lace) == (5, 3, 1, 1, 10)
    assert row["charlson_congestive_heart_failure"] == 1 and row["charlson_renal"] == 0
    assert row["prior_inpatient_12mo"] == 2
    assert row["ed_visits_6mo"] == 1  # the ED visit that led to the admission is not counted
    assert row["age_years"] == 84 and row["age_band_label"] == "75-84"
    assert row["plan_dual"] == 1 and row["plan_type"] == "dual" and row["sex_female"] == 1
    assert row["disposition_home"] == 1


def test_a_record_after_the_discharge_changes_no_feature(records: SqlCareRecordStore) -> None:
    member = make_member(records, discharged_at=DISCHARGED, codes=("E11.9",), ed_visits=1, earlier_stays=1)
    before = stay_features(records, member.member_id, member.encounter_id)
    mid, after = member.member_id, DISCHARGED + timedelta(hours=2)
    records.put_many([
        _stay(f"{member.encounter_id}-after-ed", mid, "EMER", after, days=0.1),
        _stay(f"{member.encounter_id}-after-stay", mid, "IMP", after + timedelta(days=5)),
        {"resourceType": "Condition", "id": f"{member.encounter_id}-after-cond",
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C78.00"}]},
         "subject": {"reference": f"Patient/{mid}"}, "recordedDate": _z(after)},
        {"resourceType": "Coverage", "id": f"{member.encounter_id}-after-cov", "status": "active",
         "beneficiary": {"reference": f"Patient/{mid}"}, "payor": [{"reference": "Organization/payer-x"}],
         "type": {"text": "Medicaid managed care"}, "period": {"start": (after + timedelta(days=1)).date().isoformat()}},
    ])
    assert stay_features(records, member.member_id, member.encounter_id) == before
    assert readmitted_within_30_days(records, member.member_id, member.encounter_id)  # only the label sees it


@pytest.mark.parametrize(("later", "klass", "readmitted"), [
    (None, None, False),
    (timedelta(days=29, hours=23), "IMP", True),
    (timedelta(days=30), "IMP", True),
    (timedelta(days=30, hours=1), "IMP", False),
    (timedelta(days=3), "EMER", False),
    (timedelta(days=3), "AMB", False),
])
def test_the_label_is_an_inpatient_stay_within_30_days(records: SqlCareRecordStore, later: timedelta | None,
                                                       klass: str | None, readmitted: bool) -> None:
    member = make_member(records, discharged_at=DISCHARGED, earlier_stays=2)  # earlier stays are not labels
    if later is not None:
        records.put_many([_stay(f"{member.encounter_id}-later", member.member_id, klass, DISCHARGED + later)])
    assert readmitted_within_30_days(records, member.member_id, member.encounter_id) is readmitted


def test_unrecorded_acuity_is_a_missing_feature_not_a_guess(records: SqlCareRecordStore) -> None:
    member = make_member(records, discharged_at=DISCHARGED, admit_source=None, priority=None)
    with pytest.raises(MissingFeature, match="acute_admission"):
        stay_features(records, member.member_id, member.encounter_id)


def test_a_missing_input_is_refused_by_name() -> None:
    values = dict.fromkeys(FEATURES, 0) | {"ed_visits_6mo": None}
    del values["prior_inpatient_12mo"]
    with pytest.raises(MissingFeature, match="ed_visits_6mo, prior_inpatient_12mo"):
        require_features(values)
    assert len(require_features(dict.fromkeys(FEATURES, 1))) == len(FEATURES)


def test_bands_and_plan_types() -> None:
    assert [age_band(a) for a in (18, 44, 45, 64, 65, 74, 75, 84, 85, 101)] == [
        "18-44", "18-44", "45-64", "45-64", "65-74", "65-74", "75-84", "75-84", "85+", "85+"]
    assert plan_type("Medicare + Medicaid (dual eligible)") == "dual"
    assert plan_type("Dual Eligible Special Needs Plan") == "dual"
    assert plan_type("Medicare Advantage (Part C)") == "medicare_advantage"
    assert plan_type("Medicaid managed care") == "medicaid"
    assert plan_type("Self-Pay / Uninsured") == "other"
    assert plan_type(None) == "other"
