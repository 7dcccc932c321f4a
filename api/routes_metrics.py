"""``GET /metrics``: careloom's Prometheus metrics as this API process counts them (no authentication:
counters and codes only, no identifiers; restrict it at the network, as for any scrape target)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from runtime.metrics import REGISTRY

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
