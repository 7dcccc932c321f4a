"""The careloom HTTP API and web inbox (FastAPI), served by ``careloom up`` and ``careloom api``.

Approvers authenticate with a bearer token (header) or the inbox's session
cookie; the verifier is the users file (hashed API tokens) or an identity
provider's JWTs (:mod:`api.deps`). Refusals map to status codes: 401
unauthenticated, 403 wrong role or self-approval, 404 unknown, 409 stale digest
or already decided, 422 invalid input.

With tracing on (``CARELOOM_TRACING_EXPORTER``, :mod:`runtime.tracing`) every
request is a server span named by its route template (``GET /api/runs/{workflow_id}``),
the parent of the workflow starts and updates it makes; its URL attributes carry
the template only (no ids, no query string) and no client address.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from temporalio.client import Client

from api import (
    routes_appeals,
    routes_approvals,
    routes_care_gaps,
    routes_cds,
    routes_codec,
    routes_dtr,
    routes_fhir_pas,
    routes_metrics,
    routes_pend_answers,
    routes_prior_auth,
    routes_runs,
    routes_service,
    routes_subscriptions,
    routes_web,
)
from api.decisions import decision_refused
from api.deps import SESSION_COOKIE, bind_state
from api.identity import TokenVerifier
from api.security import BodyLimitMiddleware, CodecOnlyCORS, SecurityHeadersMiddleware
from guardrails.configured import check_deployment
from runtime.errors import DecisionRefused
from runtime.settings import Settings
from runtime.temporal_client import connect
from runtime.tracing import configure_tracing

__all__ = ["ROUTERS", "SESSION_COOKIE", "create_app", "instrument_requests"]

ROUTERS: tuple[APIRouter, ...] = (
    routes_service.router,  # /api/health, /api/me
    routes_approvals.router,  # /api/approvals
    routes_codec.router,  # /codec, for the Temporal Web UI
    routes_runs.router,  # /api/runs
    routes_prior_auth.router,  # /api/prior-auth (a program's API is one more router here)
    routes_fhir_pas.router,  # /fhir/Claim/$submit, /fhir/Claim/$inquire (Da Vinci PAS)
    routes_cds.router,  # /cds-services (Da Vinci CRD over CDS Hooks)
    routes_dtr.router,  # /fhir/Questionnaire/$questionnaire-package (Da Vinci DTR)
    routes_care_gaps.router,  # /fhir/Measure/$care-gaps (Da Vinci DEQM gaps in care)
    routes_pend_answers.router,  # /fhir/QuestionnaireResponse (a provider answers a pend)
    routes_appeals.router,  # /fhir/ClaimResponse/{id}/$appeal (reconsideration)
    routes_subscriptions.router,  # /fhir/Subscription (PAS pend notifications, R4 backport rest-hook)
    routes_metrics.router,  # /metrics (Prometheus)
    routes_web.router,  # the inbox pages
)
"""Every router of the app, in the order their routes are matched and listed in the OpenAPI document."""


_UNTRACED = r"/static/.*,/metrics"
"""Requests with no span: static files and Prometheus scrapes."""
_URL_ATTRIBUTES = ("http.url", "url.full", "http.target", "url.path")
"""Span attributes the ASGI instrumentation fills from the request's URL: set to the route template."""
_DROPPED_ATTRIBUTES = ("url.query", "net.peer.ip", "client.address", "net.sock.peer.addr", "http.client_ip")
"""Span attributes emptied: a query string (FHIR searches name patients) and the caller's address."""


def _template_only(span: Any, scope: dict[str, Any]) -> None:  # noqa: ANN401 - the instrumentation's hook
    """The server request hook: a URL's ids and query string never reach a span, only its route template."""
    attributes = getattr(span, "attributes", None) or {}
    name = getattr(span, "name", "") or ""
    method, _, template = name.partition(" ")
    template = template if template.startswith("/") and method == scope.get("method") else "(unmatched route)"
    for key in _URL_ATTRIBUTES:
        if key in attributes:
            span.set_attribute(key, template)
    for key in _DROPPED_ATTRIBUTES:
        if key in attributes:
            span.set_attribute(key, "")


def instrument_requests(app: FastAPI, settings: Settings) -> bool:
    """A span per request when tracing is on (OpenTelemetry's FastAPI instrumentation); False when off."""
    provider = configure_tracing(settings)
    if provider is None:
        return False
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls=_UNTRACED,
                                       server_request_hook=_template_only, exclude_spans=["receive", "send"])
    return True


def create_app(settings: Settings, *, client: Client | None = None, verifier: TokenVerifier | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.client = client or await connect(settings)
        yield

    check_deployment(settings)  # a routing or criteria file that does not parse stops the API here
    production = settings.environment == "production"
    # The interactive docs page runs inline script from a CDN: development only (the CSP forbids it).
    app = FastAPI(title="careloom", version="0.1.0", lifespan=lifespan,
                  docs_url=None if production else "/docs", redoc_url=None,
                  description="Supervisor approvals for careloom's programs, and prior-authorization intake.")
    bind_state(app, settings, verifier=verifier)
    # Only the configured Temporal Web UI may call /codec cross-origin (with the inbox session cookie); the
    # list is fixed, so a foreign Origin is never reflected.
    app.add_middleware(CodecOnlyCORS, allow_origins=settings.codec_cors_origins)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware, production=production)
    app.add_exception_handler(DecisionRefused, decision_refused)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    instrument_requests(app, settings)
    return app
