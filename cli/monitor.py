"""``careloom monitor report``: human overrides, SLA, clocks, quality findings and drift (evaluation/monitor.py),
and the promoted risk model's drift and realised outcomes (evaluation/model_drift.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.common import settings
from cli.output import console, fail, plain, print_json, safe

app = typer.Typer(help="Monitoring figures from the decision ledger and exported histories.", no_args_is_help=True)

REPORT_FILE = "monitoring-report.html"


def _records(folder: Path) -> list:
    """Runs decoded from the exported histories in ``folder`` (``careloom history`` reads them the same way)."""
    from cli.history import decoded_runs
    from history.files import HistoryFileError, history_files

    try:
        files = history_files([folder])
    except HistoryFileError as err:
        fail(str(err), code=2)
        return []
    return decoded_runs(files)


@app.command()
def report(
    since: Annotated[str | None, typer.Option(help="Only items and runs from this date on (YYYY-MM-DD).")] = None,
    histories: Annotated[Path | None, typer.Option(help="Folder of exported histories (`careloom history export`) "
                                                        "for drift, fallbacks and model errors.")] = None,
    baseline_weeks: Annotated[int, typer.Option(min=1, help="Weeks (the first ones with data) PSI compares "
                                                            "against.")] = 1,
    html: Annotated[Path | None, typer.Option(help=f"Write a self-contained {REPORT_FILE} into this folder.")]
    = None,
    model_window_days: Annotated[int, typer.Option(min=1, help="Risk model drift: the champion's scores of the "
                                                               "last N days.")] = 30,
    outcome_window_days: Annotated[int, typer.Option(min=1, help="Risk model outcomes: the champion's scores of "
                                                                 "the last N days whose 30-day window has "
                                                                 "closed.")] = 90,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")] = False,
) -> None:
    """Approval, edit and reject rates, time to decision against SLA, escalations, expiries, quality findings;
    the promoted risk model's feature and score drift (PSI against its training split) and realised outcomes;
    with --histories also confidence and LACE drift (PSI per ISO week), planner fallbacks and model errors."""
    from store.connect import configured_database
    from evaluation.monitor import monitor_report, render_html
    from store.ledger import DecisionLedger

    start: date | None = None
    if since is not None:
        try:
            start = date.fromisoformat(since)
        except ValueError:
            fail(f"--since must be a date like 2026-01-31, not {since!r}", code=2)
    if histories is not None and not histories.is_dir():
        fail(f"--histories {histories} is not a folder; export histories into one with `careloom history export "
             f"--out {histories} --query ...`", code=2)
    cfg = settings()
    records = _records(histories) if histories is not None else None
    now = datetime.now(UTC)
    database = configured_database(cfg)
    risk = _risk_model(database, cfg, now, model_window_days, outcome_window_days)
    result = monitor_report(DecisionLedger(database).entries(), records, since=start,
                            baseline_weeks=baseline_weeks, now=now, risk_model=risk)
    written = None
    if html is not None:
        try:
            html.mkdir(parents=True, exist_ok=True)
            written = html / REPORT_FILE
            written.write_text(render_html(result), encoding="utf-8")
        except OSError as err:
            fail(f"cannot write the HTML report into {html}: {err.strerror}; pass a writable folder", code=2)
    if as_json:
        print_json(result)
        return
    _print(result)
    if written is not None:
        console.print(safe(f"HTML report: {written}"), soft_wrap=True, highlight=False)


def _risk_model(database, cfg, now: datetime, drift_days: int, outcome_days: int):  # noqa: ANN001, ANN202
    """The registry's champion: drift over the last ``drift_days``, outcomes over the last ``outcome_days``."""
    from evaluation.model_drift import risk_model_figures
    from evaluation.monitor import RiskModelFigures
    from learning.registry import ModelRegistry
    from runtime.errors import CareloomError
    from store.sql_records import SqlCareRecordStore

    try:
        registry = ModelRegistry.from_settings(cfg)
    except CareloomError as err:  # a registry setting that cannot be used: the rest of the report still stands
        return RiskModelFigures(message=f"{err}: no risk model to monitor")
    try:
        return risk_model_figures(SqlCareRecordStore(database), registry, since=now - timedelta(days=drift_days),
                                  until=now, now=now, outcome_since=now - timedelta(days=outcome_days))
    except Exception as err:  # noqa: BLE001 - the model section fails alone: the ledger figures still print
        return RiskModelFigures(message=f"the risk model could not be monitored ({err.__class__.__name__})")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _print_risk_model(risk) -> None:  # noqa: ANN001
    """The risk model section: what is monitored (or why nothing), alerts, the largest PSI, outcomes."""
    if risk is None:
        return
    if risk.message is not None:
        console.print(safe(f"risk model: {risk.message}"), soft_wrap=True, highlight=False)
        return
    console.print(safe(f"risk model: champion {risk.name} version {risk.version} ({risk.label}, sha256 "
                       f"{(risk.digest or '')[:16]}…): {risk.scored} stay(s) scored from {risk.drift_since:%Y-%m-%d}"
                       f" to {risk.until:%Y-%m-%d}, {risk.unreadable} whose features could not be read"),
                  soft_wrap=True, highlight=False)
    for earlier in risk.earlier_versions:
        console.print(safe(f"  {earlier.scored} champion score(s) by {earlier.model} (sha256 {earlier.digest}…), "
                           "an earlier champion: not in these figures"), soft_wrap=True, highlight=False)
    if risk.drift_note:
        console.print(safe(f"  {risk.drift_note}"), soft_wrap=True, highlight=False)
    lines = ([risk.score] if risk.score else []) + sorted(risk.features, key=lambda f: -(f.psi or 0.0))
    if lines and any(f.psi is not None for f in lines):
        table = Table(title="risk model drift against the training split (score, then features by PSI)")
        for column in ("", "n", "training mean", "window mean", "PSI", "reading"):
            table.add_column(column)
        for f in lines[:11]:
            table.add_row(*map(plain, (f.name, str(f.n), _num(f.reference_mean), _num(f.mean), _num(f.psi, 4),
                                       f.level or "-")))
        console.print(table)
    out = risk.outcomes
    if out is not None:
        ci = out.observed_rate_ci95
        console.print(safe(
            f"risk model outcomes (scored from {risk.outcome_since:%Y-%m-%d}): {out.labelled} labelled, "
            f"{out.awaiting_label} awaiting their 30-day window, {out.unlabelled} without a readable label; "
            f"{out.readmissions} readmission(s), observed {_pct(out.observed_rate)}"
            + (f" (95% CI {_pct(ci[0])}–{_pct(ci[1])})" if ci else "")
            + f", mean predicted {_pct(out.mean_predicted)}, training rate {_pct(out.training_rate)}; AUC "
            f"{_num(out.auc)} (validation {_num(out.validation_auc)}), Brier {_num(out.brier, 4)}"
            + (f"; {out.note}" if out.note else "")), soft_wrap=True, highlight=False)
    for alert in risk.alerts:
        console.print(safe(f"ALERT risk model: {alert}"), soft_wrap=True, highlight=False)


def _print(result) -> None:  # noqa: ANN001
    led = result.ledger
    console.print(f"{led.entries} ledger entries: {led.requested} approval item(s), {led.decided} decided, "
                  f"{led.pending} pending; {led.reminded} reminders, {led.escalated} escalations "
                  f"({led.items_escalated} items), {led.expired} expiries", soft_wrap=True)
    for title, lines in (("action kind", led.by_tool), ("approver role", led.by_role)):
        table = Table(title=f"decisions per {title}")
        for column in (title, "decided", "approved", "edited", "rejected"):
            table.add_column(column)
        for r in lines:
            table.add_row(*map(plain, (r.key, str(r.decided), _pct(r.approved_rate), _pct(r.edited_rate),
                                       _pct(r.rejected_rate))))
        console.print(table)
    table = Table(title="time to decision against SLA")
    for column in ("entry queue", "closed", "within SLA", "median hours"):
        table.add_column(column)
    for s in [*led.sla_by_queue, led.sla]:
        table.add_row(*map(plain, (s.queue, str(s.closed), _pct(s.within_sla_share),
                                   "-" if s.median_hours is None else f"{s.median_hours:.2f}")))
    console.print(table)
    q = led.quality.total
    console.print(f"quality sampling: {q.sampled} sampled, {q.reviewed} reviewed, {q.appropriate} appropriate, "
                  f"{q.inappropriate} inappropriate; audited precision {_pct(q.precision)}", soft_wrap=True)
    _print_risk_model(result.risk_model)
    hist = result.histories
    if hist is None:
        return
    console.print(f"{hist.runs} run(s) from histories: {hist.planned} planned, {hist.fallbacks} planner "
                  f"fallback(s), {hist.model_errors} model error(s)", soft_wrap=True)
    for drift in (hist.confidence, hist.lace):
        table = Table(title=plain(f"{drift.name} (baseline {', '.join(drift.baseline_weeks) or 'none'})"))
        for column in ("week", "n", "mean", "PSI", "reading"):
            table.add_column(column)
        for w in drift.weeks:
            table.add_row(*map(plain, (w.week, str(w.count), f"{w.mean:.3f}", "-" if w.psi is None else f"{w.psi:.4f}",
                                       w.level)))
        console.print(table)
