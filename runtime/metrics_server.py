"""Serving metrics: careloom's registry plus the Temporal SDK's runtime telemetry at one ``/metrics``.

The SDK (its Rust core) exports its own Prometheus text on a loopback port of
its own (``sdk_runtime``); :func:`serve_metrics` answers ``/metrics`` with
careloom's registry followed by that text, so one scrape target has both
(``careloom_*`` and ``temporal_*`` names never collide). The visibility
poller that fills the gauges workflow code cannot is :mod:`workflows.run_gauges`.
"""

from __future__ import annotations

import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from runtime.metrics import REGISTRY

__all__ = ["metrics_text", "sdk_runtime", "serve_metrics"]

log = structlog.get_logger(__name__)


def sdk_runtime(bind_address: str) -> Runtime:
    """A Temporal runtime whose metrics are served as Prometheus text on ``bind_address`` (host:port)."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind_address)))


def metrics_text(sdk_url: str | None = None) -> bytes:
    """careloom's metrics, then the SDK's (when its endpoint answers)."""
    body = generate_latest(REGISTRY)
    if sdk_url:
        try:
            with urllib.request.urlopen(sdk_url, timeout=2) as answer:  # noqa: S310 - loopback, our own port
                body += answer.read()
        except OSError as err:
            body += f"# temporal SDK metrics unavailable: {type(err).__name__}\n".encode()
    return body


def serve_metrics(host: str, port: int, sdk_url: str | None = None) -> ThreadingHTTPServer:
    """``GET /metrics`` on host:port in a daemon thread; ``.shutdown()`` stops it."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "only /metrics is served here")
                return
            body = metrics_text(sdk_url)
            self.send_response(200)
            self.send_header("content-type", CONTENT_TYPE_LATEST)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="careloom-metrics", daemon=True).start()
    log.info("metrics.serving", address=f"{host}:{server.server_address[1]}")
    return server
