"""Connecting to Temporal: the client carries :class:`runtime.plugin.CareloomPlugin` (careloom's data converter,
:mod:`runtime.data_converter`) and, when tracing is on, the SDK's OpenTelemetry ``TracingInterceptor``
(:mod:`runtime.tracing`); the SDK passes both on to every worker built from the client."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from runtime.errors import ConfigurationError
from runtime.plugin import CareloomPlugin
from runtime.settings import Settings
from runtime.tracing import tracing_interceptor

__all__ = ["connect", "tls_config"]


def tls_config(settings: Settings) -> TLSConfig | bool:
    """TLS for a real cluster: mTLS when a client certificate is set, plain TLS with an API key."""
    if settings.temporal_tls_cert is not None and settings.temporal_tls_key is not None:
        ca = settings.temporal_tls_ca.read_bytes() if settings.temporal_tls_ca else None
        return TLSConfig(
            server_root_ca_cert=ca,
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
        )
    return settings.temporal_tls or settings.temporal_api_key is not None


async def connect(settings: Settings, *, target_host: str | None = None, runtime: Runtime | None = None) -> Client:
    """Connect to the configured cluster (or the embedded server's address).

    The client carries :class:`~runtime.plugin.CareloomPlugin`: its data converter, and for every worker
    built from this client the sandbox passthrough modules and workflow failure types. With
    ``tracing_exporter`` other than ``none`` it also carries the tracing interceptor (workflow, activity and
    client spans); off, it has no interceptor at all.
    """
    host = target_host or settings.target_host
    interceptor = tracing_interceptor(settings)
    try:
        return await Client.connect(
            host,
            namespace=settings.temporal_namespace,
            api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
            tls=tls_config(settings),
            plugins=[CareloomPlugin(settings)],
            interceptors=[interceptor] if interceptor is not None else [],
            **({"runtime": runtime} if runtime is not None else {}),
        )
    except RuntimeError as err:
        raise ConfigurationError(
            f"cannot reach Temporal at {host} (namespace {settings.temporal_namespace}): {err}. "
            "Start it with `careloom up`, or set TEMPORAL_ADDRESS to a running cluster"
        ) from err
