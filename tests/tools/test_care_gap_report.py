"""The DEQM gaps-in-care output (tools/care_gap_report.py) and the measures' data from the records store
(tools/measure_data.py). Members are hand-built FHIR R4 (the helpers of test_quality_measures.py); measurement
period: calendar 2026.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from cql_sdk.compiler.cql_to_elm import translate
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.parameters import Parameters

from tests.tools.test_quality_measures import (
    CMS122,
    CMS125,
    CMS165,
    MRP,
    _diabetic,
    _hypertensive,
    blood_pressure,
    hba1c,
    hospice,
)
from tools.care_gap_report import (
    GAP_STATUS_EXTENSION,
    CareGapReportError,
    care_gaps_bundle,
    care_gaps_parameters,
    detected_issue,
    gap_status,
    measure_report,
    population_summary,
)
from tools.measure_data import MEASURE_TYPES, member_resources, patient_ids
from tools.quality_measures import MemberResult, evaluate_member, load_measures, measurement_period

NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
PERIOD = measurement_period("2026")
MEASURES = {m.id: m for m in load_measures()}


def _result(measure_id: str, member_id: str, ip: bool, den: bool, excl: bool, num: bool, gap: bool,
            evidence: tuple[str, ...] = ()) -> MemberResult:
    return MemberResult(measure_id=measure_id, member_id=member_id, period_start=PERIOD.start, period_end=PERIOD.end,
                        initial_population=ip, denominator=den, denominator_exclusion=excl, numerator=num,
                        gap_open=gap, evidence=list(evidence), engine="memory")


def _counts(report: dict[str, Any]) -> dict[str, int]:
    return {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][0]["population"]}


def _resources(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def _member(mid: str) -> list[dict[str, Any]]:
    """A diabetic (HbA1c 9.6 in June: CMS122 gap open) hypertensive (132/84 in September: CMS165 gap closed) man."""
    diabetic = _diabetic(mid, hba1c(mid, "2026-06-01T10:00:00Z", 9.6), blood_pressure(mid, "2026-09-01", 132, 84))
    hypertension = next(r for r in _hypertensive(mid) if r["resourceType"] == "Condition")
    patient = {**diabetic[0], "gender": "male"}
    return [patient, *diabetic[1:], {**hypertension, "id": f"htn-{mid}"}]


def test_open_gap_gets_a_measure_report_and_a_detected_issue_closed_gap_only_a_report() -> None:
    """CMS122 open (9.6 %) → MeasureReport 1/1/0/1 + DetectedIssue implicating it; CMS165 closed → report only."""
    resources = _member("cg1")
    results = [evaluate_member(MEASURES[m], resources, "cg1", PERIOD) for m in (CMS122, CMS165)]
    assert [(True, CMS122), (False, CMS165)] == [(r.gap_open, r.measure_id) for r in results]

    output = care_gaps_parameters(list(MEASURES.values()), results, now=NOW)
    Parameters.model_validate(output)
    (returned,) = output["parameter"]
    assert "return" == returned["name"]
    bundle = returned["resource"]
    Bundle.model_validate(bundle)
    assert ("document", "Composition") == (bundle["type"], bundle["entry"][0]["resource"]["resourceType"])
    assert all(e["fullUrl"] == f"urn:uuid:{e['resource']['id']}" for e in bundle["entry"])

    reports = {r["measure"]: r for r in _resources(bundle, "MeasureReport")}
    a1c, bp = reports[f"urn:careloom:measure/{CMS122}|1.0.0"], reports[f"urn:careloom:measure/{CMS165}|1.0.0"]
    for report in (a1c, bp):
        assert ("individual", "complete", "Patient/cg1") == (report["type"], report["status"],
                                                             report["subject"]["reference"])
        assert {"start": "2026-01-01", "end": "2026-12-31"} == report["period"]
    assert {"initial-population": 1, "denominator": 1, "denominator-exclusion": 0, "numerator": 1} == _counts(a1c)
    assert {"initial-population": 1, "denominator": 1, "denominator-exclusion": 0, "numerator": 1} == _counts(bp)
    assert "decrease" == a1c["improvementNotation"]["coding"][0]["code"]  # inverse measure
    assert {"reference": "Observation/a1c-cg1"} in a1c["evaluatedResource"]
    assert {"reference": "Observation/bp-cg1"} in bp["evaluatedResource"]

    (issue,) = _resources(bundle, "DetectedIssue")
    assert ("preliminary", "CAREGAP", "Patient/cg1") == (issue["status"], issue["code"]["coding"][0]["code"],
                                                          issue["patient"]["reference"])
    assert [{"reference": f"urn:uuid:{a1c['id']}"}] == issue["implicated"]
    assert "open-gap" == next(e for e in issue["extension"] if e["url"] == GAP_STATUS_EXTENSION)[
        "valueCodeableConcept"]["coding"][0]["code"]

    composition = bundle["entry"][0]["resource"]
    assert "96315-7" == composition["type"]["coding"][0]["code"]
    sections = {s["focus"]["reference"]: s["entry"] for s in composition["section"]}
    assert [{"reference": f"urn:uuid:{issue['id']}"}] == sections[f"urn:uuid:{a1c['id']}"]
    assert [{"reference": f"urn:uuid:{bp['id']}"}] == sections[f"urn:uuid:{bp['id']}"]


def test_status_selects_open_or_closed_gaps() -> None:
    """status=open-gap reports only the open measure, closed-gap only the closed one (no DetectedIssue)."""
    results = [_result(CMS122, "cg2", True, True, False, True, True),
               _result(CMS165, "cg2", True, True, False, True, False),
               _result(MRP, "cg2", False, False, False, False, False)]
    measures = list(MEASURES.values())
    opened = care_gaps_bundle(measures, results, now=NOW, statuses=["open-gap"])
    closed = care_gaps_bundle(measures, results, now=NOW, statuses=["closed-gap"])
    everything = care_gaps_bundle(measures, results, now=NOW)
    assert ([f"urn:careloom:measure/{CMS122}|1.0.0"], 1) == (
        [r["measure"] for r in _resources(opened, "MeasureReport")], len(_resources(opened, "DetectedIssue")))
    assert ([f"urn:careloom:measure/{CMS165}|1.0.0"], 0) == (
        [r["measure"] for r in _resources(closed, "MeasureReport")], len(_resources(closed, "DetectedIssue")))
    assert (3, 1) == (len(_resources(everything, "MeasureReport")), len(_resources(everything, "DetectedIssue")))
    not_applicable = next(r for r in _resources(everything, "MeasureReport") if MRP in r["measure"])
    assert {"initial-population": 0, "denominator": 0, "denominator-exclusion": 0, "numerator": 0} == \
        _counts(not_applicable)


def test_gap_status_of_each_kind_of_result() -> None:
    assert "open-gap" == gap_status(_result(CMS125, "m", True, True, False, False, True))
    assert "closed-gap" == gap_status(_result(CMS125, "m", True, True, False, True, False))
    assert "closed-gap" == gap_status(_result(CMS122, "m", True, True, False, False, False))  # inverse, controlled
    assert gap_status(_result(CMS125, "m", True, True, True, False, False)) is None  # excluded
    assert gap_status(_result(CMS125, "m", True, False, False, False, False)) is None  # not in the denominator


def test_population_summary_counts_by_hand() -> None:
    """CMS122: open, closed, excluded (hospice), outside → IP 3, den 3, excl 1, num 1, open 1, closed 1."""
    members = {"ps-open": _diabetic("ps-open", hba1c("ps-open", "2026-06-01", 9.6)),
               "ps-closed": _diabetic("ps-closed", hba1c("ps-closed", "2026-06-01", 7.0)),
               "ps-hospice": _diabetic("ps-hospice", hospice("ps-hospice")),
               "ps-out": _diabetic("ps-out", birth="1940-01-01")}
    results = [evaluate_member(MEASURES[CMS122], r, mid, PERIOD) for mid, r in members.items()]
    (summary,) = population_summary(results)
    assert (CMS122, 3, 3, 1, 1, 1, 1) == (summary.measure_id, summary.initial_population, summary.denominator,
                                          summary.denominator_exclusion, summary.numerator, summary.open_gaps,
                                          summary.closed_gaps)
    # CMS165 for a hand-made population: 2 closed, 1 open, 1 excluded; CMS125 named but without results → zeros.
    hand = [_result(CMS165, "a", True, True, False, True, False), _result(CMS165, "b", True, True, False, True, False),
            _result(CMS165, "c", True, True, False, False, True), _result(CMS165, "d", True, True, True, False, False)]
    by_id = {s.measure_id: s for s in population_summary(hand, [CMS125, CMS165])}
    assert (4, 4, 1, 2, 1, 2) == (by_id[CMS165].initial_population, by_id[CMS165].denominator,
                                  by_id[CMS165].denominator_exclusion, by_id[CMS165].numerator,
                                  by_id[CMS165].open_gaps, by_id[CMS165].closed_gaps)
    assert (0, 0, 0) == (by_id[CMS125].denominator, by_id[CMS125].open_gaps, by_id[CMS125].closed_gaps)


def test_report_refuses_what_does_not_make_a_report() -> None:
    """A DetectedIssue for a closed gap, a naive report time, a result without its measure, two members."""
    closed = _result(CMS165, "r1", True, True, False, True, False)
    report = measure_report(MEASURES[CMS165], closed, now=NOW)
    with pytest.raises(CareGapReportError, match="not open"):
        detected_issue(MEASURES[CMS165], closed, report, now=NOW)
    with pytest.raises(CareGapReportError, match="time zone"):
        measure_report(MEASURES[CMS165], closed, now=datetime(2026, 12, 7))
    with pytest.raises(CareGapReportError, match="without its definition"):
        care_gaps_bundle([MEASURES[CMS122]], [closed], now=NOW)
    with pytest.raises(CareGapReportError, match="one member"):
        care_gaps_bundle(list(MEASURES.values()), [closed, _result(CMS122, "r2", False, False, False, False, False)],
                         now=NOW)
    with pytest.raises(CareGapReportError, match="given with measure"):
        measure_report(MEASURES[CMS122], closed, now=NOW)


def test_measure_types_are_exactly_what_the_shipped_libraries_retrieve() -> None:
    """MEASURE_TYPES is every FHIR type a shipped CQL library retrieves (the Patient is read separately)."""
    retrieved: set[str] = set()
    for measure in MEASURES.values():
        elm = json.dumps(translate((measure.folder / measure.library).read_text(encoding="utf-8")))
        retrieved |= set(re.findall(r'"dataType": "\{http://hl7\.org/fhir\}(\w+)"', elm))
    assert retrieved - {"Patient"} == set(MEASURE_TYPES)


def test_member_resources_reads_the_patient_and_the_measured_types_only(store) -> None:  # noqa: ANN001
    """The Patient first, then Condition/Encounter/Observation/Procedure; Coverage is not read; unknown → []."""
    resources = _member("md1")
    store.put_many(resources)
    read = member_resources(store, "md1")
    assert {"resourceType": "Patient", "id": "md1"}.items() <= read[0].items()
    expected = {(r["resourceType"], r["id"]) for r in resources if r["resourceType"] != "Coverage"}
    assert expected == {(r["resourceType"], r["id"]) for r in read}
    assert [] == member_resources(store, "nobody")
    assert "md1" in patient_ids(store)
    # What the store gives back scores as the hand-built list does.
    assert evaluate_member(MEASURES[CMS122], read, "md1", PERIOD).gap_open
