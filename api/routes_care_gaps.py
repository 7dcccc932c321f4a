"""DEQM gaps in care: ``GET /fhir/Measure/$care-gaps``.

``subject=Patient/<id>`` (required, one member), ``periodStart`` and ``periodEnd`` (required, ``YYYY-MM-DD``,
inclusive), ``measureId`` (repeatable; default every shipped measure) and ``status`` (repeatable, ``open-gap`` or
``closed-gap``; default every measure evaluated, applicable or not). The member's stored records
(:func:`tools.measure_data.member_resources`) are evaluated by the in-memory CQL engine
(:func:`tools.quality_measures.evaluate_member`) and returned as the ``$care-gaps`` output Parameters
(:func:`tools.care_gap_report.care_gaps_parameters`): one gaps-in-care document Bundle with a MeasureReport per
measure and a DetectedIssue per open gap.

Every refusal is an OperationOutcome naming the problem and the fix: 400 a missing or unusable subject, period or
status; 404 a member the records store has no Patient for; 422 a measureId that is not a shipped measure. Every
request that reads a member's records (or finds no such member) is a row in the access log.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.deps import CurrentIdentity, RecordsStore, current_identity
from api.identity import Identity
from tools.care_gap_report import GAP_STATUSES, GapStatus, care_gaps_parameters
from tools.dtr import operation_outcome
from tools.measure_data import member_resources
from tools.quality_measures import (
    MeasureDefinition,
    MeasureError,
    MeasurementPeriod,
    MemberResult,
    evaluate_member,
    shipped_measures,
    measurement_period,
)

__all__ = ["ACCESS_ACTION", "FHIR_JSON", "CareGapsRefused", "router"]

ACCESS_ACTION = "measure.care_gaps"
FHIR_JSON = "application/fhir+json"
_SUBJECT = re.compile(r"^Patient/([A-Za-z0-9\-.]{1,64})$")

router = APIRouter(prefix="/fhir", dependencies=[Depends(current_identity)], tags=["DEQM"])


class CareGapsRefused(Exception):
    """A ``$care-gaps`` request refused: the HTTP status, the OperationOutcome issue code and the message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code



def _fhir(content: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(content=content, status_code=status, media_type=FHIR_JSON)


async def _audit(request: Request, caller: Identity, outcome: str) -> None:
    """A row in the access log: a member's records were read to report their care gaps (identifiers only)."""
    await asyncio.to_thread(request.app.state.access_log.record, user_id=caller.user_id, role=caller.role,
                            action=ACCESS_ACTION, outcome=outcome)


def _subject(value: str | None) -> str:
    if not value:
        raise CareGapsRefused(400, "required", "subject is missing: pass subject=Patient/<member id>")
    found = _SUBJECT.fullmatch(value)
    if found is None:
        raise CareGapsRefused(400, "value", f"subject {value!r} is not Patient/<id>: careloom reports one member "
                                            "at a time (subject=Patient/<member id>; Group is not supported)")
    return found.group(1)


def _day(name: str, value: str | None) -> date:
    if not value:
        raise CareGapsRefused(400, "required", f"{name} is missing: pass {name}=YYYY-MM-DD")
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError("not YYYY-MM-DD")
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CareGapsRefused(400, "value", f"{name} {value!r} does not parse as a date ({exc}): pass "
                                            f"{name}=YYYY-MM-DD, e.g. 2026-01-01") from None


def _period(start: str | None, end: str | None) -> MeasurementPeriod:
    first, last = _day("periodStart", start), _day("periodEnd", end)
    try:
        return measurement_period(f"{first.isoformat()}/{last.isoformat()}")
    except MeasureError as exc:
        raise CareGapsRefused(400, "value", f"periodStart {start} and periodEnd {end}: {exc}") from None


def _statuses(values: list[str]) -> list[GapStatus] | None:
    unknown = [v for v in values if v not in GAP_STATUSES]
    if unknown:
        raise CareGapsRefused(400, "value", f"status {unknown} is not one of {list(GAP_STATUSES)}: pass "
                                            "status=open-gap and/or status=closed-gap, or leave it out for all")
    return [v for v in GAP_STATUSES if v in values] or None


def _measures(asked: list[str]) -> list[MeasureDefinition]:
    measures = shipped_measures()
    if not asked:
        return list(measures)
    known = {m.id: m for m in measures}
    unknown = [a for a in asked if a not in known]
    if unknown:
        raise CareGapsRefused(422, "not-supported", f"measureId {unknown} is not a careloom measure: use one of "
                                                    f"{sorted(known)}")
    return [known[a] for a in dict.fromkeys(asked)]


def _evaluate(measures: list[MeasureDefinition], resources: list[dict[str, Any]], member_id: str,
              period: MeasurementPeriod) -> list[MemberResult]:
    try:
        return [evaluate_member(m, resources, member_id, period) for m in measures]
    except MeasureError as exc:
        raise CareGapsRefused(500, "exception", f"the measures could not be evaluated for Patient/{member_id}: "
                                                f"{exc}") from None


@router.get("/Measure/$care-gaps", responses={
    400: {"description": "A missing or unusable subject, periodStart, periodEnd or status (OperationOutcome)"},
    404: {"description": "The member is not in the plan's records (OperationOutcome)"},
    422: {"description": "A measureId that is not a careloom measure (OperationOutcome)"}})
async def care_gaps(request: Request, store: RecordsStore, caller: CurrentIdentity) -> JSONResponse:
    """The member's DEQM gaps-in-care report: a Parameters with one document Bundle (Composition, a
    MeasureReport per measure, a DetectedIssue per open gap)."""
    query = request.query_params
    try:
        member_id = _subject(query.get("subject"))
        period = _period(query.get("periodStart"), query.get("periodEnd"))
        statuses = _statuses(query.getlist("status"))
        measures = _measures(query.getlist("measureId"))
        resources = await asyncio.to_thread(member_resources, store, member_id)
        if not resources:
            await _audit(request, caller, "not_found")
            raise CareGapsRefused(404, "not-found", f"Patient/{member_id} is not in the plan's records: import the "
                                                    "member's Patient (careloom import) or check the id")
        results = await asyncio.to_thread(_evaluate, measures, resources, member_id, period)
        output = care_gaps_parameters(measures, results, now=datetime.now(UTC), statuses=statuses)
    except CareGapsRefused as err:
        return _fhir(operation_outcome("error", err.code, str(err)), err.status)
    await _audit(request, caller, "shown")
    return _fhir(output)
