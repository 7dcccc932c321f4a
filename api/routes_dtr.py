"""DTR: ``POST /fhir/Questionnaire/$questionnaire-package`` and ``GET /fhir/Questionnaire/{id}``.

The logic is :mod:`tools.dtr`. The Coverage named in the input Parameters must be in the care records store
(404 otherwise): its beneficiary's stored records pre-fill the QuestionnaireResponse. Every refusal is an
OperationOutcome naming the problem and the fix: 400 a body that is not usable Parameters, 404 an unknown
coverage or questionnaire, 422 a service no criteria cover or a questionnaire version not in force. Every
package that reads a member's records (or finds no coverage) is a row in the access log.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.deps import Criteria, CurrentIdentity, RecordsStore, current_identity
from api.identity import Identity
from store.records import member_of
from store.sql_records import SqlCareRecordStore
from tools.criteria import CriteriaSet
from tools.dtr import (
    DtrRequestError,
    build_questionnaire,
    member_records,
    operation_outcome,
    package,
    parse_package_request,
    questionnaire_id,
)

__all__ = ["ACCESS_ACTION", "FHIR_JSON", "router"]

ACCESS_ACTION = "dtr.questionnaire_package"
FHIR_JSON = "application/fhir+json"

router = APIRouter(prefix="/fhir", dependencies=[Depends(current_identity)], tags=["DTR"])


def _fhir(content: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(content=content, status_code=status, media_type=FHIR_JSON)


def _refusal(err: DtrRequestError) -> JSONResponse:
    return _fhir(operation_outcome("error", err.code, str(err)), err.status)


async def _audit(request: Request, caller: Identity, outcome: str) -> None:
    """A row in the access log: a member's records were read to pre-fill (identifiers only)."""
    await asyncio.to_thread(request.app.state.access_log.record, user_id=caller.user_id, role=caller.role,
                            action=ACCESS_ACTION, outcome=outcome)


@router.post("/Questionnaire/$questionnaire-package", responses={
    400: {"description": "Not usable input Parameters (OperationOutcome)"},
    404: {"description": "The coverage is not in the plan's records (OperationOutcome)"},
    422: {"description": "No criteria cover the service, or a questionnaire version not in force"}})
async def questionnaire_package(request: Request, store: RecordsStore, criteria: Criteria,
                                caller: CurrentIdentity) -> JSONResponse:
    """The DTR package: per service a Bundle with the Questionnaire of its criteria and a pre-filled response."""
    try:
        return _fhir(await _package(request, store, criteria, caller))
    except DtrRequestError as err:
        return _refusal(err)


async def _package(request: Request, store: SqlCareRecordStore, criteria: CriteriaSet,
                   caller: Identity) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DtrRequestError(400, "structure", "the body is not JSON: send a FHIR Parameters resource as"
                                                f" {FHIR_JSON}") from None
    asked = parse_package_request(body, criteria)
    coverage = await asyncio.to_thread(store.get, "Coverage", asked.coverage_id)
    if coverage is None:
        await _audit(request, caller, "not_found")
        raise DtrRequestError(404, "not-found", f"Coverage/{asked.coverage_id} is not in the plan's records: send"
                                                " the Coverage the plan issued to the member")
    member = member_of(coverage)
    records = await asyncio.to_thread(member_records, store, member) if member else []
    try:
        output = package(asked, criteria, coverage=coverage, records=records, base_url=str(request.base_url),
                         now=datetime.now(UTC))
    except DtrRequestError:
        await _audit(request, caller, "refused")  # the records were read, nothing was shown
        raise
    await _audit(request, caller, "shown")
    return output


@router.get("/Questionnaire/{questionnaire}", responses={404: {"description": "No such questionnaire"}})
async def read_questionnaire(questionnaire: str, request: Request, criteria: Criteria) -> JSONResponse:
    """The Questionnaire a CRD card links to, generated from the criteria in force."""
    for policy in criteria.services:
        if questionnaire_id(policy) == questionnaire:
            return _fhir(build_questionnaire(criteria, policy, base_url=str(request.base_url)))
    known = ", ".join(questionnaire_id(p) for p in criteria.services)
    return _refusal(DtrRequestError(404, "not-found", f"no Questionnaire/{questionnaire}: this plan's"
                                                      f" questionnaires are {known}"))
