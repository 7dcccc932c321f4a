"""Serving metrics: careloom's registry plus the Temporal SDK's runtime telemetry at one ``/metrics``.

The SDK (its Rust core) exports its own Prometheus text on a loopback port of
its own (``sdk_runtime``); :func:`serve_metrics` answers ``/metrics`` with
careloom's registry followed by that text, so one scrape target has both
(``careloom_*`` and ``temporal_*`` names never collide). The visibility
poller fills the gauges workflow code cannot (no I/O in workflows): runs by
program and status, runs waiting per queue and role, runs past their SLA.
"""

from __future__ import annotations

import asyncio
import threading
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, get_args

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from runtime.metrics import (
    PENDING_BY_QUEUE,
    PENDING_BY_ROLE,
    REGISTRY,
    RUNS,
    SLA_OVERDUE,
)

if TYPE_CHECKING:
    from runtime.settings import Settings

__all__ = ["VisibilityGauges", "metrics_text", "sdk_runtime", "serve_metrics"]

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


class VisibilityGauges:
    """Counts runs from Temporal visibility into the gauges, every ``interval`` seconds."""

    def __init__(self, client: Client, settings: Settings, *, interval: float = 30.0) -> None:
        self.client = client
        self.settings = settings
        self.interval = interval

    async def refresh(self) -> None:
        from agents.state import FINAL_STATUSES, RunStatus
        from workflows.programs import PROGRAMS

        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for program in PROGRAMS:
            kind = f"WorkflowType = '{program.workflow_type}'"
            for status in get_args(RunStatus):
                # A run stopped from outside (terminated, failed, timed out) keeps its last status word: an open
                # status only counts running runs.
                running = "" if status in FINAL_STATUSES else " AND ExecutionStatus = 'Running'"
                found = await self.client.count_workflows(f"{kind} AND CareloomStatus = '{status}'{running}")
                RUNS.labels(program.name, status).set(found.count)
            overdue = await self.client.count_workflows(
                f"{kind} AND ExecutionStatus = 'Running' AND CareloomSlaDeadline < '{now}'")
            SLA_OVERDUE.labels(program.name).set(overdue.count)
        queues = {q for p in PROGRAMS for q in p.configured_policy(self.settings).approvals.queues}
        for queue in sorted(queues):
            found = await self.client.count_workflows(f"ExecutionStatus = 'Running' AND CareloomQueues = '{queue}'")
            PENDING_BY_QUEUE.labels(queue).set(found.count)
        for role in ("care_coordinator", "rn", "md"):
            found = await self.client.count_workflows(
                f"ExecutionStatus = 'Running' AND CareloomApprovalRoles = '{role}'")
            PENDING_BY_ROLE.labels(role).set(found.count)

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as err:  # noqa: BLE001 - a visibility hiccup never stops the worker
                log.warning("metrics.visibility_failed", error=type(err).__name__)
            await asyncio.sleep(self.interval)
