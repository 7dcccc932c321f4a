"""DEQM gaps-in-care output from CQL measure results: FHIR R4 MeasureReports, DetectedIssues and the ``$care-gaps``
Parameters, and the per-measure population counts ``careloom gaps report`` prints.

What: from :class:`tools.quality_measures.MemberResult` values,

- :func:`measure_report` is one member's ``individual`` MeasureReport for one measure (group.population counts 0/1
  for initial-population, denominator, denominator-exclusion, numerator; ``evaluatedResource`` = the evidence);
- :func:`detected_issue` is the DetectedIssue of an **open** gap (status preliminary, code ``CAREGAP``, the DEQM
  gapStatus extension ``open-gap``, ``implicated`` = the MeasureReport);
- :func:`care_gaps_bundle` is one subject's gaps-in-care document Bundle: a Composition (LOINC 96315-7 "Gaps in
  care report") with one section per measure (``focus`` = its MeasureReport, ``entry`` = its DetectedIssue, or
  the MeasureReport when the gap is closed or the member is not counted), then the MeasureReports and
  DetectedIssues; entries have ``urn:uuid:`` fullUrls and reference one another by them;
- :func:`care_gaps_parameters` is the ``Measure/$care-gaps`` output: a Parameters with one ``return`` Bundle per
  subject;
- :func:`population_summary` counts, per measure, the initial population, denominator, exclusions, numerator,
  open gaps and closed gaps (counted members, i.e. in the denominator and not excluded, whose gap is closed).

A gap's status (:func:`gap_status`): ``open-gap`` when the result's ``gap_open``; ``closed-gap`` when the member
is in the denominator, not excluded, and the gap is not open; ``None`` (not applicable) otherwise.

Why: the Da Vinci DEQM gaps-in-care report is how payers and providers exchange care gaps; every resource is
validated as R4B (:func:`store.fhir_validation.validate_resource`) before it leaves here. Resource ids are
UUIDs derived from member, measure, period and the report time, so one call's output is reproducible.

Pure: no store, no engine, no clock (the caller passes ``now``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from store.fhir_validation import validate_resource
from tools.quality_measures import MeasureDefinition, MemberResult

__all__ = ["CAREGAP_CODE", "GAP_STATUSES", "GAP_STATUS_EXTENSION", "GAP_STATUS_SYSTEM", "CareGapReportError", "GapStatus",
           "MeasureSummary", "care_gaps_bundle", "care_gaps_parameters", "detected_issue", "gap_status",
           "measure_canonical", "measure_report", "population_summary"]

GapStatus = Literal["open-gap", "closed-gap"]
GAP_STATUSES: tuple[GapStatus, ...] = ("open-gap", "closed-gap")
"""The DEQM ``status`` values of ``$care-gaps`` careloom answers."""

GAP_STATUS_EXTENSION = "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/extension-gapStatus"
GAP_STATUS_SYSTEM = "http://hl7.org/fhir/us/davinci-deqm/CodeSystem/gaps-status"
CAREGAP_CODE = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "CAREGAP",
                "display": "Care Gaps"}
_POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
_IMPROVEMENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-improvement-notation"
_GAPS_REPORT = {"system": "http://loinc.org", "code": "96315-7", "display": "Gaps in care report"}
_IDS = uuid.UUID("5f0c2a0e-6a43-4a43-9d4e-2b7f0c1a9e24")
_AUTHOR = {"display": "careloom"}


class CareGapReportError(ValueError):
    """Results and measures that do not make one report (a result of a measure not given, mixed periods)."""


class MeasureSummary(BaseModel):
    """One measure's counts over a population of members (each member counts at most once per figure)."""

    model_config = ConfigDict(frozen=True)

    measure_id: str
    initial_population: int = 0
    denominator: int = 0
    denominator_exclusion: int = 0
    numerator: int = 0
    open_gaps: int = 0
    closed_gaps: int = 0


def gap_status(result: MemberResult) -> GapStatus | None:
    """``open-gap``, ``closed-gap`` (counted, gap not open) or ``None`` (outside the denominator, or excluded)."""
    if result.gap_open:
        return "open-gap"
    if result.denominator and not result.denominator_exclusion:
        return "closed-gap"
    return None


def measure_canonical(measure: MeasureDefinition) -> str:
    """The Measure canonical a MeasureReport names: ``urn:careloom:measure/<id>|<version>``."""
    return f"urn:careloom:measure/{measure.id}|{measure.version}"


def _id(*parts: str) -> str:
    return str(uuid.uuid5(_IDS, "|".join(parts)))


def _instant(now: datetime) -> str:
    if now.tzinfo is None:
        raise CareGapReportError("the report time has no time zone: pass an aware datetime, e.g. datetime.now(UTC)")
    return now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _period(result: MemberResult) -> dict[str, str]:
    return {"start": result.period_start.date().isoformat(), "end": result.period_end.date().isoformat()}


def _ref(resource: dict[str, Any]) -> dict[str, str]:
    return {"reference": f"urn:uuid:{resource['id']}"}


def _check(measure: MeasureDefinition, result: MemberResult) -> None:
    if measure.id != result.measure_id:
        raise CareGapReportError(f"result of measure {result.measure_id} given with measure {measure.id}: pass "
                                 "each result with its own measure")


def measure_report(measure: MeasureDefinition, result: MemberResult, *, now: datetime) -> dict[str, Any]:
    """The member's ``individual`` MeasureReport for the measure (validated as R4B)."""
    _check(measure, result)
    counts = (("initial-population", result.initial_population), ("denominator", result.denominator),
              ("denominator-exclusion", result.denominator_exclusion), ("numerator", result.numerator))
    improvement = "decrease" if measure.numerator_means == "gap_open" else "increase"
    report: dict[str, Any] = {
        "resourceType": "MeasureReport",
        "id": _id("MeasureReport", result.member_id, measure.id, measure.version, result.period_start.isoformat(),
                  result.period_end.isoformat(), _instant(now)),
        "status": "complete", "type": "individual", "measure": measure_canonical(measure),
        "subject": {"reference": f"Patient/{result.member_id}"}, "date": _instant(now), "reporter": _AUTHOR,
        "period": _period(result),
        "improvementNotation": {"coding": [{"system": _IMPROVEMENT_SYSTEM, "code": improvement}]},
        "group": [{"population": [{"code": {"coding": [{"system": _POPULATION_SYSTEM, "code": code}]},
                                   "count": int(member_in)} for code, member_in in counts]}],
    }
    if result.evidence:
        report["evaluatedResource"] = [{"reference": ref} for ref in result.evidence]
    return validate_resource(report)


def detected_issue(measure: MeasureDefinition, result: MemberResult, report: dict[str, Any], *,
                   now: datetime) -> dict[str, Any]:
    """The DetectedIssue of the member's open gap, implicating ``report`` (validated as R4B)."""
    _check(measure, result)
    if not result.gap_open:
        raise CareGapReportError(f"measure {measure.id}: member {result.member_id}'s gap is not open; a "
                                 "DetectedIssue is made only for an open gap")
    period = _period(result)
    issue: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "id": _id("DetectedIssue", report["id"]),
        "extension": [{"url": GAP_STATUS_EXTENSION, "valueCodeableConcept": {
            "coding": [{"system": GAP_STATUS_SYSTEM, "code": "open-gap"}]}}],
        "status": "preliminary", "code": {"coding": [dict(CAREGAP_CODE)]},
        "patient": {"reference": f"Patient/{result.member_id}"}, "identifiedDateTime": _instant(now),
        "author": _AUTHOR, "implicated": [_ref(report)],
        "detail": f"{measure.title} ({measure.steward_reference}): care gap open for {period['start']} to "
                  f"{period['end']}",
    }
    if result.evidence:
        issue["evidence"] = [{"detail": [{"reference": ref} for ref in result.evidence]}]
    return validate_resource(issue)


def care_gaps_bundle(measures: Sequence[MeasureDefinition], results: Sequence[MemberResult], *, now: datetime,
                     statuses: Sequence[GapStatus] | None = None) -> dict[str, Any]:
    """One subject's gaps-in-care document Bundle (validated as R4B).

    ``results`` are one member's, one per measure, same period. With ``statuses`` only the measures whose gap
    status (:func:`gap_status`) is among them are reported; without, every result is.
    """
    if not results:
        raise CareGapReportError("no results: evaluate the member's measures first")
    by_id = {m.id: m for m in measures}
    first = results[0]
    for result in results:
        if result.member_id != first.member_id or (result.period_start, result.period_end) != \
                (first.period_start, first.period_end):
            raise CareGapReportError("a gaps-in-care Bundle is about one member and one period: group the results "
                                     "by member and period")
        if result.measure_id not in by_id:
            raise CareGapReportError(f"result of measure {result.measure_id} without its definition: pass the "
                                     "measures the results were evaluated with")
    chosen = [r for r in results if statuses is None or gap_status(r) in statuses]
    sections: list[dict[str, Any]] = []
    reports: list[dict[str, Any]] = []
    issues: list[dict[str, Any]] = []
    for result in chosen:
        measure = by_id[result.measure_id]
        report = measure_report(measure, result, now=now)
        reports.append(report)
        entry = report
        if result.gap_open:
            entry = detected_issue(measure, result, report, now=now)
            issues.append(entry)
        sections.append({"title": measure.title, "focus": _ref(report), "entry": [_ref(entry)]})
    anchor = _id("Bundle", first.member_id, first.period_start.isoformat(), first.period_end.isoformat(),
                 _instant(now), *sorted(statuses or ()))
    composition = validate_resource({
        "resourceType": "Composition", "id": _id("Composition", anchor), "status": "final",
        "type": {"coding": [dict(_GAPS_REPORT)]}, "subject": {"reference": f"Patient/{first.member_id}"},
        "date": _instant(now), "author": [_AUTHOR], "title": "Gaps in care report",
        "event": [{"period": _period(first)}], **({"section": sections} if sections else {})})
    entries = [composition, *reports, *issues]
    return validate_resource({
        "resourceType": "Bundle", "id": anchor, "type": "document", "timestamp": _instant(now),
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{anchor}"},
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in entries]})


def care_gaps_parameters(measures: Sequence[MeasureDefinition], results: Sequence[MemberResult], *,
                         now: datetime, statuses: Sequence[GapStatus] | None = None) -> dict[str, Any]:
    """The ``$care-gaps`` output Parameters: one ``return`` Bundle per subject, in the order subjects first
    appear in ``results`` (validated as R4B)."""
    by_member: dict[str, list[MemberResult]] = {}
    for result in results:
        by_member.setdefault(result.member_id, []).append(result)
    bundles = [care_gaps_bundle(measures, member_results, now=now, statuses=statuses)
               for member_results in by_member.values()]
    return validate_resource({"resourceType": "Parameters",
                              "parameter": [{"name": "return", "resource": b} for b in bundles]})


def population_summary(results: Sequence[MemberResult],
                       measure_ids: Sequence[str] | None = None) -> list[MeasureSummary]:
    """Per measure (those named in ``measure_ids`` with zeros where no result, then any other in the results;
    sorted by id) the population counts."""
    counts: dict[str, dict[str, int]] = {mid: {} for mid in measure_ids or ()}
    for result in results:
        tally = counts.setdefault(result.measure_id, {})
        status = gap_status(result)
        for name, member_in in (("initial_population", result.initial_population),
                                ("denominator", result.denominator),
                                ("denominator_exclusion", result.denominator_exclusion),
                                ("numerator", result.numerator), ("open_gaps", status == "open-gap"),
                                ("closed_gaps", status == "closed-gap")):
            tally[name] = tally.get(name, 0) + int(member_in)
    return [MeasureSummary(measure_id=mid, **tally) for mid, tally in sorted(counts.items())]
