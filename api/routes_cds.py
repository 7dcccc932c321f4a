"""CRD over CDS Hooks: ``GET /cds-services`` (discovery) and ``POST /cds-services/{id}`` (a hook call).

The logic is :mod:`tools.crd`; here the body is read after the caller is authenticated (a CDS client sends its
bearer JWT, checked by :func:`api.deps.current_identity` like every route), the patient and coverage come from
the prefetch or, when the client sent none, from the care records store by ``context.patientId``. Statuses are
the CDS Hooks ones: 404 an unknown service id, 400 a malformed request (the message names the fix), 412 when
the patient or their coverage cannot be found (the CDS Hooks status for data the service cannot obtain). Every
call that reads a member's records is a row in the access log (``crd.<service id>``).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request

from api.deps import Criteria, CurrentIdentity, RecordsStore, current_identity
from api.identity import Identity
from tools.crd import (
    PREFETCH,
    SERVICES,
    CdsRequestError,
    UnknownService,
    answer,
    discovery,
    parse_hook_request,
    pick_coverage,
)

__all__ = ["router"]

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/cds-services", dependencies=[Depends(current_identity)], tags=["CRD (CDS Hooks)"])


async def _audit(request: Request, caller: Identity, service_id: str, outcome: str) -> None:
    """A row in the access log: the member's coverage was read for this caller (identifiers only)."""
    await asyncio.to_thread(request.app.state.access_log.record, user_id=caller.user_id, role=caller.role,
                            action=f"crd.{service_id}", outcome=outcome)


@router.get("")
async def services() -> dict[str, Any]:
    """The discovery document: the order-select and order-sign services and their prefetch templates."""
    return discovery()


@router.post("/{service_id}", responses={
    400: {"description": "Not a usable hook request (the message names the fix)"},
    401: {"description": "Not signed in"}, 404: {"description": "No CDS Service has this id"},
    412: {"description": "The patient or their coverage is neither prefetched nor in the records"}})
async def call(service_id: str, request: Request, store: RecordsStore, criteria: Criteria,
               caller: CurrentIdentity) -> dict[str, Any]:
    """Answer a hook: per ordered item a card, and an update adding the CRD coverage-information extension."""
    if service_id not in SERVICES:  # before the body: an unknown service is 404 whatever was sent
        raise HTTPException(status_code=404, detail=str(UnknownService(
            f"no CDS Service {service_id!r}: GET /cds-services lists {', '.join(SERVICES)}")))
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HTTPException(status_code=400, detail="the body is not JSON: send the CDS Hooks request as"
                                                    " application/json") from None
    try:
        hook = parse_hook_request(service_id, body)
    except CdsRequestError as err:
        raise HTTPException(status_code=400, detail=str(err)) from None
    patient = hook.patient or await asyncio.to_thread(store.get, "Patient", hook.patient_id)
    if patient is None:
        await _audit(request, caller, service_id, "not_found")
        raise HTTPException(status_code=412, detail=(
            f"Patient/{hook.patient_id} is not prefetched and not a member in the plan's records: prefetch"
            f" {PREFETCH['patient']!r}, or send the plan's member id"))
    coverages = hook.coverages if hook.coverages is not None else await asyncio.to_thread(
        store.find_for_member, "Coverage", hook.patient_id)
    today = datetime.now(UTC).date()
    coverage = pick_coverage(coverages, hook.patient_id, today)
    if coverage is None:
        await _audit(request, caller, service_id, "not_found")
        raise HTTPException(status_code=412, detail=(
            f"no Coverage of Patient/{hook.patient_id} was prefetched or is in the plan's records: prefetch"
            f" {PREFETCH['coverage']!r}"))
    response = answer(hook, coverage, criteria, today=today, base_url=str(request.base_url))
    await _audit(request, caller, service_id, "shown")
    # No PHI: the service, the caller and counts only.
    log.info("crd.hook", service=service_id, user_id=caller.user_id, orders=len(hook.orders))
    return response
