"""``GET /metrics``: careloom's Prometheus metrics as this API process counts them, plus the decision ledger's
monitoring figures computed at scrape time (no authentication: counters, rates and codes only, no identifiers;
restrict it at the network, as for any scrape target)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from evaluation.ledger_gauges import LedgerFiguresCollector
from runtime.metrics import REGISTRY

router = APIRouter(tags=["operations"])


def _ledger_registry(request: Request) -> CollectorRegistry:
    """One registry per app for the ledger collector (the process-wide REGISTRY has no settings to read)."""
    registry = getattr(request.app.state, "ledger_metrics", None)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(LedgerFiguresCollector(request.app.state.store.db))
        request.app.state.ledger_metrics = registry
    return registry


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    # A plain def: FastAPI runs it in a thread, so reading the ledger never blocks the event loop.
    body = generate_latest(REGISTRY) + generate_latest(_ledger_registry(request))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
