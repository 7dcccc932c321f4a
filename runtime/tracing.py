"""OpenTelemetry tracing: API request -> StartWorkflow -> RunWorkflow -> StartActivity -> RunActivity -> model
request, one trace. Off by default (``CARELOOM_TRACING_EXPORTER=none``); docs/operations.md.

* :func:`configure_tracing` builds the process's tracer provider from settings (``console``: spans to stderr,
  ``otlp``: OTLP/HTTP to ``tracing_otlp_endpoint``), with ``service.name`` = ``tracing_service_name``. Tests give
  an exporter of their own (e.g. the SDK's in-memory one).
* :func:`tracing_interceptor` is the Temporal SDK's :class:`~temporalio.contrib.opentelemetry.TracingInterceptor`
  on that provider, or None when tracing is off: :func:`runtime.temporal_client.connect` adds it to the client,
  and every worker built from the client inherits it.
* :func:`tracer` is what careloom's own spans use (the model client, the API); a no-op tracer when tracing is off.

Spans carry identifiers and codes only (step, model name, token counts, status, route templates): never a
prompt, a completion, a member's data or a request body. careloom records no exception events on its spans (an
endpoint's error text may quote what it was sent).
"""

from __future__ import annotations

import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from temporalio.contrib.opentelemetry import TracingInterceptor

from runtime.settings import Settings

__all__ = ["TRACER_NAME", "configure_tracing", "current_provider", "shutdown_tracing", "tracer", "tracing_interceptor",
           "tracing_on"]

TRACER_NAME = "careloom"

_provider: TracerProvider | None = None


def tracing_on(settings: Settings) -> bool:
    """Whether settings turn tracing on (any exporter but ``none``)."""
    return settings.tracing_exporter != "none"


def _exporter_for(settings: Settings) -> SpanExporter:
    if settings.tracing_exporter == "console":
        return ConsoleSpanExporter(out=sys.stderr)
    # Imported only when chosen: the OTLP exporter pulls in protobuf messages and requests.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # No endpoint set: the exporter's own default (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else localhost:4318).
    return OTLPSpanExporter(endpoint=settings.tracing_otlp_endpoint)


def configure_tracing(settings: Settings, *, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """The process's tracer provider, built once from settings; None when tracing is off.

    ``exporter`` (tests): spans go to it, one by one as they end, whatever ``tracing_exporter`` says; it replaces
    the provider configured before. Without it, a provider already configured is returned as it is, so the API,
    the client and the worker of one process share one."""
    global _provider
    if exporter is None:
        if not tracing_on(settings):
            return None
        if _provider is not None:
            return _provider
        processor = BatchSpanProcessor(_exporter_for(settings))
    else:
        processor = SimpleSpanProcessor(exporter)
    provider = TracerProvider(resource=Resource.create({"service.name": settings.tracing_service_name}))
    provider.add_span_processor(processor)
    _provider = provider
    return provider


def current_provider() -> TracerProvider | None:
    """The provider :func:`configure_tracing` built, if any."""
    return _provider


def shutdown_tracing() -> None:
    """Flush and stop the configured provider (at process exit); careloom's spans are no-ops after it."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def tracer(name: str = TRACER_NAME) -> trace.Tracer:
    """The tracer careloom's own spans use: the configured provider's, else OpenTelemetry's global one (a no-op
    unless the process installed a provider of its own)."""
    return _provider.get_tracer(name) if _provider is not None else trace.get_tracer(name)


def tracing_interceptor(settings: Settings) -> TracingInterceptor | None:
    """The Temporal SDK's tracing interceptor on the configured provider; None when tracing is off."""
    provider = configure_tracing(settings)
    if provider is None:
        return None
    return TracingInterceptor(provider.get_tracer("temporalio"))
