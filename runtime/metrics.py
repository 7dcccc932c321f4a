"""careloom's Prometheus metrics: counters and gauges every process updates, served at ``/metrics``.

One registry per process (``REGISTRY``); the worker serves it on
``CARELOOM_WORKER_METRICS_PORT``, the API at ``/metrics``, the ADT listener on
its own port. Labels carry codes only (program, outcome, queue, role, message
type, ACK code) — never identifiers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from store.database import Database
    from store.ledger import LedgerEntry

__all__ = [
    "ADT_LATENCY",
    "ADT_MESSAGES",
    "MODEL_ERRORS",
    "MODEL_REQUESTS",
    "MODEL_TOKENS",
    "PENDING_BY_QUEUE",
    "PENDING_BY_ROLE",
    "QUALITY_SAMPLED",
    "REGISTRY",
    "RUNS",
    "RUNS_STARTED",
    "SLA_OVERDUE",
    "SWEEP_STARTED",
    "TCM_DEADLINES",
    "LedgerFiguresCollector",
    "count_quality_samples",
]

REGISTRY = CollectorRegistry(auto_describe=True)

RUNS_STARTED = Counter("careloom_runs_started_total", "Runs started, by program and trigger (adt, import, sweep, "
                       "cli, api).", ["program", "trigger"], registry=REGISTRY)
RUNS = Gauge("careloom_runs", "Runs by program and status (CareloomStatus), as last counted from Temporal "
             "visibility by the worker.", ["program", "status"], registry=REGISTRY)
PENDING_BY_QUEUE = Gauge("careloom_pending_approval_runs_by_queue", "Running runs with an approval waiting in "
                         "this queue (visibility).", ["queue"], registry=REGISTRY)
PENDING_BY_ROLE = Gauge("careloom_pending_approval_runs_by_role", "Running runs with an approval waiting for this "
                        "role (visibility).", ["role"], registry=REGISTRY)
SLA_OVERDUE = Gauge("careloom_sla_overdue_runs", "Running runs whose earliest approval is past its SLA deadline "
                    "(visibility): escalations under way.", ["program"], registry=REGISTRY)
TCM_DEADLINES = Counter("careloom_tcm_deadlines_total", "Discharges started for outreach by TCM deadline state "
                        "(on_time, at_risk: due within 24 h, missed).", ["state"], registry=REGISTRY)
MODEL_REQUESTS = Counter("careloom_model_requests_total", "Requests to the language model, by step (planner, "
                         "recommender).", ["step"], registry=REGISTRY)
MODEL_TOKENS = Counter("careloom_model_tokens_total", "Model tokens, by step and kind (prompt, completion).",
                       ["step", "kind"], registry=REGISTRY)
MODEL_ERRORS = Counter("careloom_model_errors_total", "Failed model requests, by step and error type.",
                       ["step", "error"], registry=REGISTRY)
ADT_MESSAGES = Counter("careloom_adt_messages_total", "HL7 v2 messages received, by trigger event and ACK code "
                       "(AA, AE, AR).", ["event", "ack"], registry=REGISTRY)
ADT_LATENCY = Histogram("careloom_adt_ack_seconds", "Time from an HL7 message's arrival to its ACK.",
                        registry=REGISTRY, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
SWEEP_STARTED = Counter("careloom_sweep_discharges_total", "Discharges the sweep looked at, by result "
                        "(started, existing, skipped).", ["result"], registry=REGISTRY)
QUALITY_SAMPLED = Counter("careloom_quality_sampled_total", "Automatically executed actions sampled for the "
                          "retrospective quality review, by program and action kind (counted by the worker that "
                          "appends them to the ledger).", ["program", "tool"], registry=REGISTRY)


def _program_of(workflow_id: str) -> str:
    from workflows.programs import PROGRAMS

    return next((p.name for p in PROGRAMS if workflow_id.startswith(p.id_prefix)), "other")


def count_quality_samples(entries: Iterable[LedgerEntry]) -> None:
    """Count the ``sampled`` entries just appended to the ledger."""
    for entry in entries:
        if entry.event == "sampled":
            QUALITY_SAMPLED.labels(_program_of(entry.workflow_id), entry.tool or "unknown").inc()


class LedgerFiguresCollector(Collector):
    """The monitoring report's ledger figures as gauges, computed from the decision ledger at scrape time.

    Labels are action kinds (a handful), approver roles (three), queues (configured) and findings (two):
    bounded by configuration, never by traffic. Reads the whole ledger per scrape, which is what a
    monitoring scrape every 15-60 s can afford at a plan's volume of approvals (thousands a day); keep
    `careloom monitor report` for history-wide figures.
    """

    def __init__(self, db: Database) -> None:
        from store.ledger import DecisionLedger

        self._ledger = DecisionLedger(db)  # the API's database: its SQLite connection per thread, or its pool

    def collect(self) -> Iterator[Metric]:
        from evaluation.monitor import ledger_figures

        figures = ledger_figures(self._ledger.entries())
        rates = GaugeMetricFamily("careloom_ledger_decision_rate", "Share of final human decisions that approved, "
                                  "edited or rejected, by action kind (from the decision ledger).",
                                  labels=["tool", "decision"])
        role_rates = GaugeMetricFamily("careloom_ledger_decision_rate_by_role", "Share of final human decisions "
                                       "that approved, edited or rejected, by approver role.",
                                       labels=["role", "decision"])
        decided = GaugeMetricFamily("careloom_ledger_decisions", "Final human decisions in the ledger, by "
                                    "action kind.", labels=["tool"])
        for line in figures.by_tool:
            decided.add_metric([line.key], line.decided)
            for name in ("approved", "edited", "rejected"):
                rates.add_metric([line.key, name], getattr(line, f"{name}_rate"))
        for line in figures.by_role:
            for name in ("approved", "edited", "rejected"):
                role_rates.add_metric([line.key, name], getattr(line, f"{name}_rate"))
        sla = GaugeMetricFamily("careloom_ledger_decided_within_sla_ratio", "Share of closed approvals (decided "
                                "or expired) decided before their queue's deadline (no escalation), by entry queue.",
                                labels=["queue"])
        for line in figures.sla_by_queue:
            sla.add_metric([line.queue], line.within_sla_share)
        clocks = GaugeMetricFamily("careloom_ledger_clock_events", "Reminders, escalations and expiries in the "
                                   "ledger.", labels=["event"])
        for name in ("reminded", "escalated", "expired"):
            clocks.add_metric([name], getattr(figures, name))
        quality = GaugeMetricFamily("careloom_quality_reviews", "Sampled automatic executions by review state "
                                    "(pending, appropriate, inappropriate) and action kind.",
                                    labels=["tool", "finding"])
        precision = GaugeMetricFamily("careloom_quality_precision", "Share of reviewed samples judged "
                                      "appropriate (audited automation precision), by action kind.",
                                      labels=["tool"])
        for line in figures.quality.by_tool:
            quality.add_metric([line.tool, "pending"], line.sampled - line.reviewed)
            quality.add_metric([line.tool, "appropriate"], line.appropriate)
            quality.add_metric([line.tool, "inappropriate"], line.inappropriate)
            if line.precision is not None:
                precision.add_metric([line.tool], line.precision)
        yield from (decided, rates, role_rates, sla, clocks, quality, precision)
