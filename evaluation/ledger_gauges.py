"""The monitoring report's ledger figures as Prometheus gauges, computed from the decision ledger at scrape time
(the API registers the collector on its ``/metrics``)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from evaluation.monitor import ledger_figures
from store.database import Database
from store.ledger import DecisionLedger

__all__ = ["LedgerFiguresCollector"]


class LedgerFiguresCollector(Collector):
    """The monitoring report's ledger figures as gauges, computed from the decision ledger at scrape time.

    Labels are action kinds (a handful), approver roles (three), queues (configured) and findings (two):
    bounded by configuration, never by traffic. Reads the whole ledger per scrape, which is what a
    monitoring scrape every 15-60 s can afford at a plan's volume of approvals (thousands a day); keep
    `careloom monitor report` for history-wide figures.
    """

    def __init__(self, db: Database) -> None:
        self._ledger = DecisionLedger(db)  # the API's database: its SQLite connection per thread, or its pool

    def collect(self) -> Iterator[Metric]:
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
