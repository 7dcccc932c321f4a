"""The monitoring report: human overrides, SLA, clocks, quality findings and drift, from the ledger and histories.

Pure functions: decision-ledger entries (and, optionally, runs decoded from
exported histories, and the promoted risk model's figures that
:mod:`evaluation.model_drift` reads from the records store) in, a
:class:`MonitorReport` out, then JSON or a self-contained HTML page.
``careloom monitor report`` is the thin command over them, and the API's
``/metrics`` serves :func:`ledger_figures` as gauges.
Definitions of every figure: docs/monitoring.md.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, Field, computed_field

from evaluation.quality import finding_of
from store.ledger_entries import LedgerEntry

if TYPE_CHECKING:
    from history.events import RunRecord

__all__ = ["CONFIDENCE_EDGES", "LACE_BINS", "DecisionRates", "DriftReport", "FeatureDrift", "HistoryFigures",
           "LedgerFigures", "MonitorReport", "QualityFigures", "QualityLine", "RealisedOutcomes", "RiskModelFigures",
           "SlaLine", "VersionCount", "WeekDrift", "drift_level", "history_figures", "iso_week", "ledger_figures",
           "monitor_report", "psi", "render_html"]

CONFIDENCE_EDGES: tuple[float, ...] = tuple(float(x) for x in np.linspace(0.0, 1.0, 11))
"""Ten fixed bins of width 0.1 on [0, 1] (the last one includes 1.0)."""
LACE_BINS = 20
"""One bin per LACE score, 0..19."""
PSI_EPSILON = 1e-4
"""Share put in an empty bin so its log term stays finite."""

_FINAL = ("approved", "edited", "rejected")
_QUALITY_EVENTS = ("sampled", "quality_reviewed")

DriftLevel = Literal["baseline", "stable", "moderate", "significant"]


# --- ledger figures ------------------------------------------------------------------------------

class DecisionRates(BaseModel):
    """Final human decisions on one action kind (or by one approver role) and their shares."""

    key: str = Field(description="The action kind or the approver role.")
    decided: int
    approved: int
    edited: int
    rejected: int

    def _share(self, n: int) -> float:
        return n / self.decided if self.decided else 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def approved_rate(self) -> float:
        return self._share(self.approved)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def edited_rate(self) -> float:
        return self._share(self.edited)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rejected_rate(self) -> float:
        return self._share(self.rejected)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def override_rate(self) -> float:
        """Edited or rejected: the human changed the agent's proposal."""
        return self._share(self.edited + self.rejected)


class SlaLine(BaseModel):
    """Time to decision in one entry queue (or all of them)."""

    queue: str
    closed: int = Field(description="Items decided or expired.")
    decided: int
    within_sla: int = Field(description="Decided before their queue's deadline (no escalation before the decision).")
    median_hours: float | None = Field(description="Median hours from request to final decision.")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def within_sla_share(self) -> float:
        return self.within_sla / self.closed if self.closed else 0.0


class QualityLine(BaseModel):
    tool: str
    sampled: int = 0
    reviewed: int = 0
    appropriate: int = 0
    inappropriate: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def precision(self) -> float | None:
        """Share of reviewed samples judged appropriate: audited automation precision."""
        return self.appropriate / self.reviewed if self.reviewed else None


class QualityFigures(BaseModel):
    total: QualityLine
    by_tool: list[QualityLine]


class LedgerFigures(BaseModel):
    entries: int
    requested: int = Field(description="Approval items requested.")
    pending: int = Field(description="Requested items with no final decision or expiry yet.")
    decided: int
    by_tool: list[DecisionRates]
    by_role: list[DecisionRates]
    sla: SlaLine
    sla_by_queue: list[SlaLine]
    reminded: int
    escalated: int
    items_escalated: int
    expired: int
    quality: QualityFigures


def _since(entries: Iterable[LedgerEntry], since: date | None) -> list[list[LedgerEntry]]:
    """Entries grouped per item (workflow id, approval or action id), keeping items that began on or after since."""
    groups: dict[tuple[str, str, bool], list[LedgerEntry]] = defaultdict(list)
    for e in entries:
        groups[(e.workflow_id, e.approval_id, e.event in _QUALITY_EVENTS)].append(e)
    return [g for g in groups.values() if since is None or g[0].at.date() >= since]


def _rates(key: str, finals: list[tuple[str, bool]]) -> DecisionRates:
    """``finals``: (final event, edited at a first sign-off)."""
    edited = sum(1 for event, early in finals if event == "edited" or (event == "approved" and early))
    return DecisionRates(key=key, decided=len(finals), edited=edited,
                         approved=sum(1 for event, early in finals if event == "approved" and not early),
                         rejected=sum(1 for event, _ in finals if event == "rejected"))


def _sla(queue: str, items: list[tuple[bool, bool, float | None]]) -> SlaLine:
    """``items``: (decided, within SLA, hours to decision) per closed item."""
    hours = [h for d, _, h in items if d and h is not None]
    return SlaLine(queue=queue, closed=len(items), decided=sum(d for d, _, _ in items),
                   within_sla=sum(w for _, w, _ in items),
                   median_hours=round(statistics.median(hours), 3) if hours else None)


def ledger_figures(entries: Iterable[LedgerEntry], since: date | None = None) -> LedgerFigures:
    """Every ledger figure of the report (definitions: docs/monitoring.md)."""
    entries = list(entries)
    groups = _since(entries, since)
    by_tool: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    by_role: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    sla: dict[str, list[tuple[bool, bool, float | None]]] = defaultdict(list)
    clocks: Counter[str] = Counter()
    requested = pending = items_escalated = 0
    quality: dict[str, QualityLine] = {}
    for group in groups:
        events = [e.event for e in group]
        if group[0].event in _QUALITY_EVENTS:
            sample = next((e for e in group if e.event == "sampled"), None)
            if sample is None:
                continue
            line = quality.setdefault(sample.tool or "unknown", QualityLine(tool=sample.tool or "unknown"))
            line.sampled += 1
            review = next((e for e in group if e.event == "quality_reviewed"), None)
            if review is not None:
                line.reviewed += 1
                finding = finding_of(review)
                line.appropriate += finding == "appropriate"
                line.inappropriate += finding == "inappropriate"
            continue
        clocks.update(e for e in events if e in ("reminded", "escalated", "expired"))
        first = next((e for e in group if e.event == "requested"), None)
        if first is None:
            continue  # the item was requested before --since's window (or the ledger was cut): not an item here
        requested += 1
        items_escalated += "escalated" in events
        final = next((e for e in group if e.event in _FINAL), None)
        expired = next((e for e in group if e.event == "expired"), None)
        queue = first.queue or "unknown"
        if final is not None:
            early_edit = any(e.event == "signed_off" and e.digest != first.digest for e in group)
            by_tool[final.tool or first.tool or "unknown"].append((final.event, early_edit))
            by_role[final.role or "unknown"].append((final.event, early_edit))
            escalated_before = any(e.event == "escalated" and e.at <= final.at for e in group)
            hours = (final.at - first.at).total_seconds() / 3600
            sla[queue].append((True, not escalated_before, hours))
        elif expired is not None:
            sla[queue].append((False, False, None))
        else:
            pending += 1
    all_sla = [x for items in sla.values() for x in items]
    tools = sorted(quality.values(), key=lambda q: q.tool)
    total = QualityLine(tool="all", sampled=sum(q.sampled for q in tools), reviewed=sum(q.reviewed for q in tools),
                        appropriate=sum(q.appropriate for q in tools),
                        inappropriate=sum(q.inappropriate for q in tools))
    return LedgerFigures(
        entries=sum(len(g) for g in groups), requested=requested, pending=pending,
        decided=sum(len(v) for v in by_tool.values()),
        by_tool=[_rates(k, v) for k, v in sorted(by_tool.items())],
        by_role=[_rates(k, v) for k, v in sorted(by_role.items())],
        sla=_sla("all", all_sla), sla_by_queue=[_sla(q, v) for q, v in sorted(sla.items())],
        reminded=clocks["reminded"], escalated=clocks["escalated"], items_escalated=items_escalated,
        expired=clocks["expired"], quality=QualityFigures(total=total, by_tool=tools))


# --- drift: Population Stability Index ----------------------------------------------------------

def psi(expected: Sequence[float], actual: Sequence[float], *, epsilon: float = PSI_EPSILON) -> float:
    """Population Stability Index of ``actual`` against ``expected`` (counts or shares over the same bins).

        PSI = sum_i (a_i - e_i) * ln(a_i / e_i)

    with a_i, e_i each distribution's share in bin i; a share of 0 counts as ``epsilon``.
    """
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.shape != a.shape or e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("psi needs two non-empty distributions over the same bins")
    e = np.clip(e / e.sum(), epsilon, None)
    a = np.clip(a / a.sum(), epsilon, None)
    return float(np.sum((a - e) * np.log(a / e)))


def drift_level(value: float) -> DriftLevel:
    """The usual reading: < 0.1 stable, 0.1-0.25 moderate, > 0.25 significant."""
    return "stable" if value < 0.1 else "moderate" if value <= 0.25 else "significant"


def iso_week(at: datetime) -> str:
    year, week, _ = at.isocalendar()
    return f"{year}-W{week:02d}"


class WeekDrift(BaseModel):
    week: str
    count: int
    mean: float
    counts: list[int] = Field(description="Values per bin.")
    psi: float | None = Field(description="Against the baseline; None for a baseline week.")
    level: DriftLevel


class DriftReport(BaseModel):
    name: str
    bins: list[str]
    baseline_weeks: list[str]
    weeks: list[WeekDrift]


def _counts(values: list[float], kind: Literal["confidence", "lace"]) -> list[int]:
    if kind == "confidence":
        return [int(n) for n in np.histogram(np.clip(values, 0.0, 1.0), bins=CONFIDENCE_EDGES)[0]]
    return [int(n) for n in np.bincount(np.clip(np.asarray(values, dtype=int), 0, LACE_BINS - 1),
                                        minlength=LACE_BINS)]


def _drift(name: str, kind: Literal["confidence", "lace"], by_week: dict[str, list[float]],
           baseline_weeks: int) -> DriftReport:
    weeks = sorted(w for w, v in by_week.items() if v)
    base = weeks[:baseline_weeks]
    reference = _counts([x for w in base for x in by_week[w]], kind) if base else []
    rows = []
    for week in weeks:
        values = by_week[week]
        counts = _counts(values, kind)
        value = None if week in base else round(psi(reference, counts), 4)
        rows.append(WeekDrift(week=week, count=len(values), mean=round(float(np.mean(values)), 4), counts=counts,
                              psi=value, level="baseline" if value is None else drift_level(value)))
    bins = ([f"{lo:.1f}-{hi:.1f}" for lo, hi in zip(CONFIDENCE_EDGES, CONFIDENCE_EDGES[1:], strict=False)]
            if kind == "confidence" else [str(n) for n in range(LACE_BINS)])
    return DriftReport(name=name, bins=bins, baseline_weeks=base, weeks=rows)


# --- history figures ----------------------------------------------------------------------------

class WeekPlanning(BaseModel):
    week: str
    runs: int
    planned: int
    fallbacks: int
    model_errors: int


class HistoryFigures(BaseModel):
    runs: int
    planned: int = Field(description="Runs with a plan (outreach) or recommendation (prior auth).")
    fallbacks: int = Field(description="Plans made by the offline rules because the model could not.")
    model_errors: int = Field(description="Planner activity calls that failed for good (model errors).")
    planning_by_week: list[WeekPlanning]
    automatic_executions: dict[str, int] = Field(description="Actions executed with no human, by action kind.")
    confidence: DriftReport
    lace: DriftReport


def _is_fallback(planner: str) -> bool:
    return "→" in planner or "(fallback)" in planner


def history_figures(records: Iterable[RunRecord], since: date | None = None, *,
                    baseline_weeks: int = 1) -> HistoryFigures:
    """Drift, fallbacks and model errors from decoded runs (weeks are ISO weeks of each run's start)."""
    from workflows.programs import OUTREACH, PLANNER_ACTIVITIES

    confidence: dict[str, list[float]] = defaultdict(list)
    lace: dict[str, list[float]] = defaultdict(list)
    weeks: dict[str, WeekPlanning] = {}
    automatic: Counter[str] = Counter()
    runs = 0
    for record in records:
        if since is not None and record.started_at.date() < since:
            continue
        runs += 1
        week = iso_week(record.started_at)
        line = weeks.setdefault(week, WeekPlanning(week=week, runs=0, planned=0, fallbacks=0, model_errors=0))
        line.runs += 1
        calls = [c for c in record.calls if c.name in PLANNER_ACTIVITIES]
        line.model_errors += sum(c.failure is not None for c in calls)
        plans = [c.result for c in calls if c.result is not None]
        if plans:
            line.planned += 1
            final = plans[-1]
            line.fallbacks += _is_fallback(final.planner)
            confidence[week].extend(p.confidence for p in final.proposals)
        if record.program is OUTREACH and record.facts is not None and record.facts.lace is not None:
            lace[week].append(float(record.facts.lace))
        if record.result is not None:
            automatic.update(a.tool for a in record.result.actions if a.status == "executed" and not a.approved_by)
    planning = [weeks[w] for w in sorted(weeks)]
    return HistoryFigures(
        runs=runs, planned=sum(w.planned for w in planning), fallbacks=sum(w.fallbacks for w in planning),
        model_errors=sum(w.model_errors for w in planning), planning_by_week=planning,
        automatic_executions=dict(sorted(automatic.items())),
        confidence=_drift("confidence of proposed actions", "confidence", confidence, baseline_weeks),
        lace=_drift("LACE at discharge", "lace", lace, baseline_weeks))


# --- the risk model: drift against its training reference, realised outcomes (evaluation/model_drift.py) ---

class FeatureDrift(BaseModel):
    """One feature (or the score) in the window against the training split's bins in the model's manifest."""

    name: str
    n: int = Field(description="Values compared: scored stays (for a feature, those whose features could be read).")
    reference_mean: float = Field(description="Mean on the training split.")
    mean: float | None = Field(description="Mean in the window (None with no values).")
    reference_shares: list[float] = Field(description="Training split's share per bin.")
    counts: list[int] = Field(description="Window's values per bin.")
    psi: float | None = Field(description="PSI against the training split; None below the minimum count.")
    level: DriftLevel | None


class VersionCount(BaseModel):
    """Champion scores in the window made by another model version (an earlier champion): not in the figures."""

    model: str = Field(description="The RiskAssessment's method code, <name>/<registry version>.")
    digest: str = Field(description="First 16 hex digits of the model file's sha256.")
    scored: int


class RealisedOutcomes(BaseModel):
    """The champion's scores against the readmissions that followed (stays whose 30-day window has closed)."""

    scored: int = Field(description="Champion scores (this version) in the outcome window.")
    labelled: int = Field(description="Of them, stays whose 30-day window had closed by the report time.")
    awaiting_label: int = Field(description="Stays whose 30-day window is still open.")
    unlabelled: int = Field(description="Stays whose label could not be read (no discharge on record).")
    readmissions: int
    observed_rate: float | None
    observed_rate_ci95: list[float] | None = Field(description="Wilson 95 % interval of the observed rate.")
    mean_predicted: float | None
    calibration_gap: float | None = Field(description="Mean predicted − observed rate.")
    auc: float | None = Field(description="Realised AUC (needs the minimum count and both outcomes).")
    brier: float | None
    training_rate: float | None = Field(description="Readmission rate of the training split (manifest).")
    validation_auc: float | None = Field(description="Held-out AUC from the model's validation (manifest).")
    validation_auc_ci95: list[float] | None
    note: str | None = Field(default=None, description="Why AUC, Brier or calibration are not judged.")


class RiskModelFigures(BaseModel):
    """The promoted (champion) readmission-risk model: drift and realised performance, or why none."""

    message: str | None = Field(default=None, description="Why there is nothing to monitor (no registry, "
                                                          "no champion, an unreadable manifest).")
    name: str | None = None
    version: str | None = None
    label: str | None = None
    digest: str | None = Field(default=None, description="sha256 of the monitored model file.")
    drift_since: datetime | None = None
    until: datetime | None = None
    outcome_since: datetime | None = None
    min_stays: int = 0
    scored: int = Field(default=0, description="Champion scores by this version in the drift window.")
    unreadable: int = Field(default=0, description="Of them, stays whose features could not be read now "
                                                   "(counted, never imputed; left out of the feature PSI).")
    unreadable_reasons: dict[str, int] = Field(default_factory=dict)
    malformed: int = Field(default=0, description="RiskAssessments without a model, probability or stay.")
    earlier_versions: list[VersionCount] = Field(default_factory=list)
    drift_note: str | None = Field(default=None, description="No reference in the manifest, or too few stays.")
    score: FeatureDrift | None = None
    features: list[FeatureDrift] = Field(default_factory=list)
    outcomes: RealisedOutcomes | None = None
    alerts: list[str] = Field(default_factory=list, description="What crossed a threshold (docs/metrics.md).")


# --- the report ---------------------------------------------------------------------------------

class MonitorReport(BaseModel):
    generated_at: datetime
    since: date | None
    ledger: LedgerFigures
    histories: HistoryFigures | None = None
    risk_model: RiskModelFigures | None = None


def monitor_report(entries: Iterable[LedgerEntry], records: Iterable[RunRecord] | None = None, *,
                   since: date | None = None, baseline_weeks: int = 1, now: datetime,
                   risk_model: RiskModelFigures | None = None) -> MonitorReport:
    return MonitorReport(generated_at=now, since=since, ledger=ledger_figures(entries, since),
                         histories=None if records is None else history_figures(records, since,
                                                                                baseline_weeks=baseline_weeks),
                         risk_model=risk_model)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _risk_model_html(risk: RiskModelFigures) -> str:
    """The risk model section: what is monitored, alerts, score and feature PSI, realised outcomes."""
    import html

    from evaluation.plots import bar_chart, html_table

    parts = ["<h2>Risk model: drift and realised outcomes</h2>"]
    if risk.message is not None:
        return parts[0] + f"<p>{html.escape(risk.message)}</p>"
    parts.append(f"<p>Champion {html.escape(str(risk.name))} version {html.escape(str(risk.version))} "
                 f"({html.escape(str(risk.label))}, model sha256 {html.escape(str(risk.digest)[:16])}…). Drift: "
                 f"{risk.scored} scored stays from {risk.drift_since:%Y-%m-%d} to {risk.until:%Y-%m-%d}, "
                 f"{risk.unreadable} whose features could not be read (not imputed), against the training split. "
                 "PSI &lt; 0.1 stable, 0.1–0.25 moderate, &gt; 0.25 significant.</p>")
    if risk.earlier_versions:
        parts.append(html_table(["scored by an earlier champion (not in these figures)", "model sha256", "stays"],
                                [[v.model, v.digest, v.scored] for v in risk.earlier_versions]))
    parts.append("<h3>Alerts</h3>" + ("<ul>" + "".join(f"<li>{html.escape(a)}</li>" for a in risk.alerts)
                                       + "</ul>" if risk.alerts else "<p>None.</p>"))
    if risk.drift_note:
        parts.append(f"<p>{html.escape(risk.drift_note)}</p>")
    lines = ([risk.score] if risk.score else []) + sorted(risk.features, key=lambda f: -(f.psi or 0.0))
    if lines:
        parts.append(html_table(["", "n", "training mean", "window mean", "PSI", "reading"],
                                [[f.name, f.n, _num(f.reference_mean), _num(f.mean), _num(f.psi, 4),
                                  f.level or "-"] for f in lines]))
        top = [f for f in lines if f.psi is not None][:12]
        if top:
            parts.append(bar_chart([f.name for f in top], [f.psi or 0.0 for f in top],
                                   title="PSI against the training split (largest)", ylabel="PSI"))
    out = risk.outcomes
    if out is not None:
        parts.append(f"<h3>Realised outcomes (scored from {risk.outcome_since:%Y-%m-%d})</h3>")
        parts.append(html_table(
            ["scored", "labelled", "awaiting label", "label unreadable", "readmissions", "observed rate (95 % CI)",
             "mean predicted", "training rate", "AUC", "validation AUC (95 % CI)", "Brier"],
            [[out.scored, out.labelled, out.awaiting_label, out.unlabelled, out.readmissions,
              _pct(out.observed_rate) + (f" ({_pct(out.observed_rate_ci95[0])}–{_pct(out.observed_rate_ci95[1])})"
                                         if out.observed_rate_ci95 else ""),
              _pct(out.mean_predicted), _pct(out.training_rate), _num(out.auc),
              _num(out.validation_auc) + (f" ({_num(out.validation_auc_ci95[0])}–{_num(out.validation_auc_ci95[1])})"
                                          if out.validation_auc_ci95 else ""), _num(out.brier, 4)]]))
        if out.note:
            parts.append(f"<p>{html.escape(out.note)}</p>")
    return "".join(parts)


def render_html(report: MonitorReport) -> str:
    """A self-contained page: tables and inline PNG plots, no script, no external resource."""
    from evaluation.plots import bar_chart, grouped_bar_chart, html_page, html_table, line_chart

    led = report.ledger
    window = f"since {report.since}" if report.since else "all time"
    parts = [f"<p>Generated {report.generated_at:%Y-%m-%d %H:%M} UTC, {window}. {led.entries} ledger entries, "
             f"{led.requested} approval items requested, {led.decided} decided, {led.pending} pending. "
             "Definitions: docs/monitoring.md.</p>", "<h2>Human decisions</h2>"]
    for title, lines in (("per action kind", led.by_tool), ("per approver role", led.by_role)):
        parts.append(f"<h3>{title}</h3>")
        parts.append(html_table(["", "decided", "approved", "edited", "rejected", "override rate"],
                                [[r.key, r.decided, _pct(r.approved_rate), _pct(r.edited_rate),
                                  _pct(r.rejected_rate), _pct(r.override_rate)] for r in lines]))
        if lines:
            parts.append(grouped_bar_chart([r.key for r in lines], {
                "approved": [r.approved_rate for r in lines], "edited": [r.edited_rate for r in lines],
                "rejected": [r.rejected_rate for r in lines]}, title=f"Decisions {title}", ylabel="share"))
    parts.append("<h2>Time to decision against SLA</h2>")
    sla_rows = [*led.sla_by_queue, led.sla]
    parts.append(html_table(["entry queue", "closed", "decided", "within SLA", "share within SLA", "median hours"],
                            [[s.queue, s.closed, s.decided, s.within_sla, _pct(s.within_sla_share),
                              s.median_hours] for s in sla_rows]))
    if led.sla_by_queue:
        parts.append(bar_chart([s.queue for s in led.sla_by_queue], [s.within_sla_share for s in led.sla_by_queue],
                               title="Share decided within SLA", ylabel="share"))
    parts.append("<h2>Clocks</h2>" + html_table(["reminders", "escalations", "items escalated", "expiries"],
                                                [[led.reminded, led.escalated, led.items_escalated, led.expired]]))
    q = led.quality
    parts.append("<h2>Quality sampling (retrospective review of automatic executions)</h2>")
    parts.append(html_table(["action kind", "sampled", "reviewed", "appropriate", "inappropriate",
                             "precision (audited)"],
                            [[x.tool, x.sampled, x.reviewed, x.appropriate, x.inappropriate, _pct(x.precision)]
                             for x in [*q.by_tool, q.total]]))
    reviewed = [x for x in q.by_tool if x.precision is not None]
    if reviewed:
        parts.append(bar_chart([x.tool for x in reviewed], [x.precision or 0.0 for x in reviewed],
                               title="Audited automation precision", ylabel="share appropriate"))
    hist = report.histories
    if hist is not None:
        parts.append(f"<h2>From {hist.runs} exported histories</h2>")
        parts.append(html_table(["week", "runs", "planned", "planner fallbacks", "model errors"],
                                [[w.week, w.runs, w.planned, w.fallbacks, w.model_errors]
                                 for w in hist.planning_by_week]))
        if hist.automatic_executions:
            parts.append("<h3>Automatic executions</h3>" + html_table(
                ["action kind", "executed with no human"], list(hist.automatic_executions.items())))
        for drift in (hist.confidence, hist.lace):
            parts.append(f"<h3>{drift.name}: distribution and PSI per week</h3>")
            parts.append(f"<p>Baseline: {', '.join(drift.baseline_weeks) or 'no data'}. "
                         "PSI &lt; 0.1 stable, 0.1–0.25 moderate, &gt; 0.25 significant.</p>")
            parts.append(html_table(["week", "n", "mean", "PSI", "reading"],
                                    [[w.week, w.count, w.mean, w.psi, w.level] for w in drift.weeks]))
            if drift.weeks:
                parts.append(line_chart([w.week for w in drift.weeks], {"mean": [w.mean for w in drift.weeks]},
                                        title=f"Mean {drift.name}", ylabel="mean"))
                parts.append(line_chart([w.week for w in drift.weeks],
                                        {"PSI": [w.psi or 0.0 for w in drift.weeks]},
                                        title=f"PSI of {drift.name}", ylabel="PSI"))
    if report.risk_model is not None:
        parts.append(_risk_model_html(report.risk_model))
    return html_page("careloom monitoring report", "".join(parts))
