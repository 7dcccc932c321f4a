"""careloom's Prometheus metrics: counters and gauges every process updates, served at ``/metrics``.

One registry per process (``REGISTRY``); the worker serves it on
``CARELOOM_WORKER_METRICS_PORT``, the API at ``/metrics``, the ADT listener on
its own port. Labels carry codes only (program, outcome, queue, role, message
type, ACK code) — never identifiers. The collectors that read careloom's own data are above this layer:
the ledger figures (:mod:`evaluation.ledger_gauges`), the run and approval counts (:mod:`workflows.run_gauges`) and
the quality-sample counter's updates (:mod:`workflows.ledger_activity`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
]

REGISTRY = CollectorRegistry(auto_describe=True)

RUNS_STARTED = Counter("careloom_runs_started_total", "Runs started, by program and trigger (adt, import, sweep, "
                       "cli, api).", ["program", "trigger"], registry=REGISTRY)
RUNS = Gauge("careloom_runs", "Runs by program and status (CareloomStatus), as last counted from Temporal "
             "visibility by the deployment's one poller (the run-counts lease).", ["program", "status"],
             registry=REGISTRY)
PENDING_BY_QUEUE = Gauge("careloom_pending_approval_runs_by_queue", "Running runs with an approval waiting in "
                         "this queue (approvals projection).", ["queue"], registry=REGISTRY)
PENDING_BY_ROLE = Gauge("careloom_pending_approval_runs_by_role", "Running runs with an approval waiting for this "
                        "role (approvals projection).", ["role"], registry=REGISTRY)
SLA_OVERDUE = Gauge("careloom_sla_overdue_runs", "Running runs with an approval past its SLA deadline "
                    "(approvals projection): escalations under way.", ["program"], registry=REGISTRY)
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
