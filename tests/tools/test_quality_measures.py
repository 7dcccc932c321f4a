"""The shipped CQL quality measures on hand-checked members (in-memory engine), and the bad-input errors.

``CASES`` is shared with test_quality_measures_postgres.py: the same members must score the same on PostgreSQL.
Measurement period: calendar 2026 throughout.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tools.quality_measures import (
    MEASURES_FOLDER,
    MeasureError,
    evaluate_member,
    load_measure,
    load_measures,
    measurement_period,
)

CPT = "http://www.ama-assn.org/go/cpt"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"

CMS122 = "cms122-diabetes-hba1c-poor-control"
CMS165 = "cms165-controlling-high-blood-pressure"
CMS125 = "cms125-breast-cancer-screening"
MRP = "mrp-medication-reconciliation-post-discharge"
PERIOD = "2026"


# --- hand-built FHIR R4 resources ---------------------------------------------------------------------------

def patient(mid: str, birth: str = "1960-03-01", gender: str = "female") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": mid, "birthDate": birth, "gender": gender,
            "name": [{"family": "Measure", "given": ["Testy"]}]}


def coverage(mid: str) -> dict[str, Any]:
    return {"resourceType": "Coverage", "id": f"cov-{mid}", "status": "active",
            "beneficiary": {"reference": f"Patient/{mid}"}, "payor": [{"reference": "Organization/payer-x"}],
            "period": {"start": "2020-01-01", "end": "2099-12-31"}}


def visit(mid: str, when: str = "2026-03-02T09:00:00Z", code: str = "99213", eid: str = "visit",
          system: str = CPT) -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": f"{eid}-{mid}", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [{"coding": [{"system": system, "code": code}]}], "subject": {"reference": f"Patient/{mid}"},
            "period": {"start": when, "end": when}}


def inpatient_stay(mid: str, start: str, end: str, eid: str = "stay") -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": f"{eid}-{mid}", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": f"Patient/{mid}"}, "period": {"start": start, "end": end}}


def condition(mid: str, code: str, onset: str = "2019-06-01", cid: str = "dx", system: str = ICD10) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": f"{cid}-{mid}",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": system, "code": code}]}, "subject": {"reference": f"Patient/{mid}"},
            "onsetDateTime": onset}


def hba1c(mid: str, when: str, value: float | None, oid: str = "a1c") -> dict[str, Any]:
    obs: dict[str, Any] = {"resourceType": "Observation", "id": f"{oid}-{mid}", "status": "final",
                           "code": {"coding": [{"system": LOINC, "code": "4548-4"}]},
                           "subject": {"reference": f"Patient/{mid}"}, "effectiveDateTime": when}
    if value is not None:
        obs["valueQuantity"] = {"value": value, "unit": "%", "system": UCUM, "code": "%"}
    return obs


def blood_pressure(mid: str, when: str, systolic: int, diastolic: int, oid: str = "bp") -> dict[str, Any]:
    def component(code: str, value: int) -> dict[str, Any]:
        return {"code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": {"value": value, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}}
    return {"resourceType": "Observation", "id": f"{oid}-{mid}", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}]}, "subject": {"reference": f"Patient/{mid}"},
            "effectiveDateTime": when, "component": [component("8480-6", systolic), component("8462-4", diastolic)]}


def procedure(mid: str, code: str, when: str, pid: str = "proc", system: str = CPT) -> dict[str, Any]:
    return {"resourceType": "Procedure", "id": f"{pid}-{mid}", "status": "completed",
            "code": {"coding": [{"system": system, "code": code}]}, "subject": {"reference": f"Patient/{mid}"},
            "performedDateTime": when}


def hospice(mid: str) -> dict[str, Any]:
    return procedure(mid, "385763009", "2026-08-01", pid="hospice", system=SNOMED)


# --- hand-checked members ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    measure: str
    name: str
    resources: list[dict[str, Any]]
    expected: tuple[bool, bool, bool, bool, bool]
    """(initial population, denominator, denominator exclusion, numerator, gap open)"""
    evidence: tuple[str, ...] = ()

    @property
    def member_id(self) -> str:
        return self.resources[0]["id"]


OUT = (False, False, False, False, False)


def _diabetic(mid: str, *extra: dict[str, Any], birth: str = "1960-03-01") -> list[dict[str, Any]]:
    return [patient(mid, birth), coverage(mid), visit(mid), condition(mid, "E11.9"), *extra]


def _hypertensive(mid: str, *extra: dict[str, Any], birth: str = "1955-01-10", onset: str = "2018-04-01"
                  ) -> list[dict[str, Any]]:
    return [patient(mid, birth, "male"), coverage(mid), visit(mid), condition(mid, "I10", onset), *extra]


def _woman(mid: str, *extra: dict[str, Any], birth: str = "1962-07-15", gender: str = "female"
           ) -> list[dict[str, Any]]:
    return [patient(mid, birth, gender), coverage(mid), visit(mid, code="99396"), *extra]


def _discharged(mid: str, *extra: dict[str, Any], end: str = "2026-04-10T15:00:00Z") -> list[dict[str, Any]]:
    return [patient(mid, "1948-02-02"), coverage(mid), inpatient_stay(mid, "2026-04-06T08:00:00Z", end), *extra]


CASES: list[Case] = [
    # CMS122 (inverse: Numerator = poor control or no test = gap OPEN)
    Case(CMS122, "controlled a1c", _diabetic("qm122a", hba1c("qm122a", "2026-06-01T10:00:00Z", 7.4)),
         (True, True, False, False, False), ("Observation/a1c-qm122a", "Condition/dx-qm122a", "Encounter/visit-qm122a")),
    Case(CMS122, "a1c above 9", _diabetic("qm122b", hba1c("qm122b", "2026-06-01T10:00:00Z", 9.6)),
         (True, True, False, True, True), ("Observation/a1c-qm122b",)),
    Case(CMS122, "a1c exactly 9 is not poor control", _diabetic("qm122c", hba1c("qm122c", "2026-06-01", 9.0)),
         (True, True, False, False, False)),
    Case(CMS122, "no a1c in the period", _diabetic("qm122d", hba1c("qm122d", "2025-11-20", 6.5)),
         (True, True, False, True, True)),
    Case(CMS122, "a1c without a result value", _diabetic("qm122e", hba1c("qm122e", "2026-05-05", None)),
         (True, True, False, True, True)),
    Case(CMS122, "most recent wins: 10.1 in May then 7.0 on the last day (date only)",
         _diabetic("qm122f", hba1c("qm122f", "2026-05-01", 10.1, "a1c1"), hba1c("qm122f", "2026-12-31", 7.0, "a1c2")),
         (True, True, False, False, False), ("Observation/a1c2-qm122f",)),
    Case(CMS122, "last-day test at 23:30 UTC counts",
         _diabetic("qm122g", hba1c("qm122g", "2026-05-01", 10.1, "a1c1"),
                   hba1c("qm122g", "2026-12-31T23:30:00Z", 6.8, "a1c2")), (True, True, False, False, False)),
    Case(CMS122, "a test on Jan 1 after the period does not count",
         _diabetic("qm122h", hba1c("qm122h", "2026-05-01", 10.1, "a1c1"),
                   hba1c("qm122h", "2027-01-01T00:00:00Z", 6.8, "a1c2")), (True, True, False, True, True)),
    Case(CMS122, "offset converted to UTC: 2026-12-31T20:00-05:00 is 2027",
         _diabetic("qm122i", hba1c("qm122i", "2026-05-01", 10.1, "a1c1"),
                   hba1c("qm122i", "2026-12-31T20:00:00-05:00", 6.8, "a1c2")), (True, True, False, True, True)),
    Case(CMS122, "age 76 at period end is outside",
         _diabetic("qm122j", hba1c("qm122j", "2026-06-01", 10.0), birth="1950-06-30"), OUT),
    Case(CMS122, "age 75 on the last day is inside",
         _diabetic("qm122k", hba1c("qm122k", "2026-06-01", 10.0), birth="1951-12-31"), (True, True, False, True, True)),
    Case(CMS122, "no visit in the period", [patient("qm122l"), condition("qm122l", "E11.9")], OUT),
    Case(CMS122, "not diabetic", [patient("qm122m"), visit("qm122m"), condition("qm122m", "I10")], OUT),
    Case(CMS122, "hospice excluded", _diabetic("qm122n", hospice("qm122n")), (True, True, True, False, False)),
    # CMS165 (Numerator = controlled = gap closed)
    Case(CMS165, "controlled 132/84", _hypertensive("qm165a", blood_pressure("qm165a", "2026-09-01T10:00:00Z", 132, 84)),
         (True, True, False, True, False), ("Observation/bp-qm165a", "Condition/dx-qm165a")),
    Case(CMS165, "systolic 140 is not controlled",
         _hypertensive("qm165b", blood_pressure("qm165b", "2026-09-01", 140, 80)), (True, True, False, False, True)),
    Case(CMS165, "diastolic 90 is not controlled",
         _hypertensive("qm165c", blood_pressure("qm165c", "2026-09-01", 128, 90)), (True, True, False, False, True)),
    Case(CMS165, "no blood pressure in the period", _hypertensive("qm165d"), (True, True, False, False, True)),
    Case(CMS165, "most recent (last day) controls, earlier high does not",
         _hypertensive("qm165e", blood_pressure("qm165e", "2026-03-01", 162, 98, "bp1"),
                       blood_pressure("qm165e", "2026-12-31", 128, 78, "bp2")), (True, True, False, True, False),
         ("Observation/bp2-qm165e",)),
    Case(CMS165, "a reading after the period does not count",
         _hypertensive("qm165f", blood_pressure("qm165f", "2026-03-01", 162, 98, "bp1"),
                       blood_pressure("qm165f", "2027-01-01", 128, 78, "bp2")), (True, True, False, False, True)),
    Case(CMS165, "diagnosed in the second half of the period is outside",
         _hypertensive("qm165g", onset="2026-08-15"), OUT),
    Case(CMS165, "age 86 is outside", _hypertensive("qm165h", birth="1940-01-01"), OUT),
    Case(CMS165, "ESRD excluded", _hypertensive("qm165i", condition("qm165i", "N18.6", "2024-02-01", "esrd")),
         (True, True, True, False, False)),
    Case(CMS165, "hospice excluded", _hypertensive("qm165j", hospice("qm165j")), (True, True, True, False, False)),
    # CMS125 (Numerator = screened = gap closed)
    Case(CMS125, "mammogram in the period", _woman("qm125a", procedure("qm125a", "77067", "2026-02-11", "mammo")),
         (True, True, False, True, False), ("Procedure/mammo-qm125a",)),
    Case(CMS125, "mammogram on Oct 1 two years before counts",
         _woman("qm125b", procedure("qm125b", "77067", "2024-10-01", "mammo")), (True, True, False, True, False)),
    Case(CMS125, "mammogram on Sep 30 two years before does not",
         _woman("qm125c", procedure("qm125c", "77067", "2024-09-30", "mammo")), (True, True, False, False, True)),
    Case(CMS125, "no mammogram", _woman("qm125d"), (True, True, False, False, True)),
    Case(CMS125, "men are outside", _woman("qm125e", gender="male"), OUT),
    Case(CMS125, "age 51 at period end is outside", _woman("qm125f", birth="1975-01-01"), OUT),
    Case(CMS125, "bilateral mastectomy excluded",
         _woman("qm125g", procedure("qm125g", "27865001", "2015-05-05", "mastectomy", SNOMED)),
         (True, True, True, False, False)),
    Case(CMS125, "Z90.13 history excluded", _woman("qm125h", condition("qm125h", "Z90.13", "2016-01-01")),
         (True, True, True, False, False)),
    # MRP (Numerator = every discharge reconciled within 30 days = gap closed)
    Case(MRP, "reconciled 10 days after discharge", _discharged("qm130a", procedure("qm130a", "1111F", "2026-04-20")),
         (True, True, False, True, False), ("Encounter/stay-qm130a",)),
    Case(MRP, "reconciled on day 30 (SNOMED code)",
         _discharged("qm130b", procedure("qm130b", "430193006", "2026-05-10", system=SNOMED)),
         (True, True, False, True, False)),
    Case(MRP, "reconciled on day 31 is late", _discharged("qm130c", procedure("qm130c", "1111F", "2026-05-11")),
         (True, True, False, False, True), ("Encounter/stay-qm130c",)),
    Case(MRP, "reconciled before the discharge does not count",
         _discharged("qm130d", procedure("qm130d", "1111F", "2026-04-01")), (True, True, False, False, True)),
    Case(MRP, "second discharge not reconciled: gap open",
         _discharged("qm130e", procedure("qm130e", "1111F", "2026-04-12", "rec1"),
                     inpatient_stay("qm130e", "2026-09-01T08:00:00Z", "2026-09-04T12:00:00Z", "stay2")),
         (True, True, False, False, True), ("Encounter/stay2-qm130e", "Encounter/stay-qm130e")),
    Case(MRP, "discharge after the period is outside", _discharged("qm130f", end="2027-01-01T10:00:00Z"), OUT),
    Case(MRP, "discharge on the last day is inside", _discharged("qm130g", end="2026-12-31T22:00:00Z"),
         (True, True, False, False, True)),
    Case(MRP, "hospice excluded", _discharged("qm130h", hospice("qm130h")), (True, True, True, False, False)),
]


@pytest.fixture(scope="module")
def measures():
    return {m.id: m for m in load_measures()}


def test_the_shipped_measures_load_with_their_metadata(measures):
    assert sorted(measures) == sorted([CMS122, CMS125, CMS165, MRP])
    assert measures[CMS122].numerator_means == "gap_open"
    assert {measures[m].numerator_means for m in (CMS125, CMS165, MRP)} == {"gap_closed"}
    assert measures[CMS122].steward_reference == "CMS122v11-like"
    assert "urn:careloom:valueset:hba1c-laboratory-test" in measures[CMS122].value_set_urls
    for measure in measures.values():
        assert measure.populations.denominator_exclusion == "Denominator Exclusion"


@pytest.mark.parametrize("case", CASES, ids=[f"{c.measure.split('-')[0]}: {c.name}" for c in CASES])
def test_member_populations_in_memory(measures, case):
    result = evaluate_member(measures[case.measure], case.resources, case.member_id, measurement_period(PERIOD))
    got = (result.initial_population, result.denominator, result.denominator_exclusion, result.numerator,
           result.gap_open)
    assert got == case.expected
    assert result.engine == "memory" and result.member_id == case.member_id
    for ref in case.evidence:
        assert ref in result.evidence


def test_evidence_lists_only_the_most_recent_test_in_order(measures):
    case = next(c for c in CASES if c.member_id == "qm122f")
    result = evaluate_member(measures[CMS122], case.resources, "qm122f", measurement_period(PERIOD))
    assert result.evidence[0] == "Observation/a1c2-qm122f"
    assert "Observation/a1c1-qm122f" not in result.evidence


def test_a_member_outside_the_population_has_no_evidence(measures):
    case = next(c for c in CASES if c.member_id == "qm125e")
    assert evaluate_member(measures[CMS125], case.resources, "qm125e", measurement_period(PERIOD)).evidence == []


def test_the_patient_must_be_among_the_resources(measures):
    with pytest.raises(MeasureError, match="no Patient/someone-else"):
        evaluate_member(measures[CMS122], _diabetic("qm122z"), "someone-else", measurement_period(PERIOD))


def test_a_shorter_period_moves_the_boundary(measures):
    resources = _diabetic("qm122p", hba1c("qm122p", "2026-07-01", 10.5, "a1c1"), hba1c("qm122p", "2026-06-30", 6.0, "a1c2"))
    first_half = evaluate_member(measures[CMS122], resources, "qm122p", measurement_period("2026-01-01/2026-06-30"))
    whole_year = evaluate_member(measures[CMS122], resources, "qm122p", measurement_period("2026"))
    assert (first_half.numerator, first_half.gap_open) == (False, False)
    assert (whole_year.numerator, whole_year.gap_open) == (True, True)


# --- measurement period --------------------------------------------------------------------------------------

def test_measurement_period_year_and_range():
    year = measurement_period("2026")
    assert (year.start.isoformat(), year.end.isoformat()) == ("2026-01-01T00:00:00", "2026-12-31T23:59:59.999000")
    span = measurement_period(" 2026-04-01/2026-06-30 ")
    assert (span.start.isoformat(), span.end.date().isoformat()) == ("2026-04-01T00:00:00", "2026-06-30")


@pytest.mark.parametrize("text", ["", "26", "2026-13-01/2026-12-31", "2026-01-01", "2026-12-31/2026-01-01",
                                  "last year"])
def test_bad_measurement_periods_are_refused(text):
    with pytest.raises(MeasureError, match="measurement period"):
        measurement_period(text)


# --- bad measure definitions ----------------------------------------------------------------------------------

def _copy_measure(tmp_path: Path, measure_id: str = CMS122) -> Path:
    target = tmp_path / "measures" / measure_id
    shutil.copytree(MEASURES_FOLDER / measure_id, target)
    return target


def test_a_library_that_does_not_compile_names_file_line_and_message(tmp_path):
    folder = _copy_measure(tmp_path)
    cql = folder / "DiabetesHbA1cPoorControl.cql"
    lines = cql.read_text().splitlines()
    broken_line = next(i for i, line in enumerate(lines) if line.startswith('define "Denominator":')) + 2
    lines[broken_line - 1] = '  "Initial Population" and and'
    cql.write_text("\n".join(lines) + "\n")
    with pytest.raises(MeasureError) as raised:
        load_measures(tmp_path / "measures")
    message = str(raised.value)
    assert f"{cql}:{broken_line}: CQL does not compile (line {broken_line}, column 28)" in message
    assert "Unexpected token 'and'" in message


def test_a_value_set_the_measure_does_not_ship_is_named(tmp_path):
    folder = _copy_measure(tmp_path)
    (folder / "valuesets" / "hba1c-laboratory-test.json").unlink()
    with pytest.raises(MeasureError, match=r'"HbA1c Laboratory Test" \(urn:careloom:valueset:hba1c-laboratory-test\) '
                                           r"is not shipped"):
        load_measures(tmp_path / "measures")


def test_a_population_definition_missing_from_the_library_is_named(tmp_path):
    folder = _copy_measure(tmp_path, CMS165)
    spec = folder / "measure.json"
    spec.write_text(spec.read_text().replace('"numerator": "Numerator"', '"numerator": "Controlled"'))
    with pytest.raises(MeasureError, match=r"\['Controlled'\] are not defined in ControllingHighBloodPressure.cql"):
        load_measure(folder)


def test_a_missing_folder_or_library_file_is_refused(tmp_path):
    with pytest.raises(MeasureError, match="does not exist"):
        load_measures(tmp_path / "nowhere")
    folder = _copy_measure(tmp_path, MRP)
    (folder / "MedicationReconciliationPostDischarge.cql").unlink()
    with pytest.raises(MeasureError, match="MedicationReconciliationPostDischarge.cql cannot be read"):
        load_measure(folder)
