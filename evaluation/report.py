"""The evaluation report: one JSON document (``careloom-eval-report/1``) and a self-contained HTML page."""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field

from evaluation.metrics import Metrics
from evaluation.oracle import CaseResult
from evaluation.scenarios import SkippedCase

__all__ = ["FORMAT", "EvalReport", "calibration_rows", "render_html", "write_report"]

FORMAT = "careloom-eval-report/1"


class SuiteInfo(BaseModel):
    root: str
    digest: str = Field(description="sha256 prefix of the loaded cases: two reports compare only on one digest.")
    cases: int
    skipped: list[SkippedCase]
    not_applicable: list[str] = Field(description="Cases with a model reply, skipped by a non-scripted planner.")


class EvalReport(BaseModel):
    format: str = FORMAT
    label: str = Field(description="What was evaluated (planner and policy), for compare.")
    planner: str
    policy_ids: list[str]
    started_at: datetime
    duration_seconds: float
    calibrator: str | None = Field(default=None, description=(
        "The confidence calibrator the planners applied (version, method, digest); None: raw confidence."))
    suite: SuiteInfo
    metrics: Metrics
    cases: list[CaseResult]

    @property
    def passed(self) -> bool:
        return self.metrics.passed


def write_report(report: EvalReport, folder: Path) -> tuple[Path, Path]:
    """``report.json`` and ``report.html`` in ``folder`` (made if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / "report.json", folder / "report.html"
    json_path.write_text(report.model_dump_json(indent=2), encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path


def calibration_rows(m: Metrics) -> list[tuple[str, float | None, str]]:
    """(metric, value, over) rows for ECE before and after calibration on the held-out split (console table and
    HTML figures); none when the run had too few labelled actions to split."""
    c = m.calibration_held_out
    if c is None:
        return []
    kinds = ", ".join(c.kinds_calibrated) or "no kind"
    return [
        ("ece_held_out_raw", c.ece_raw, f"{c.held_out_actions} held-out labelled actions (seed {c.seed})"),
        ("ece_held_out_calibrated", c.ece_calibrated,
         f"same actions, {c.method} per kind fitted on {c.fit_actions} others ({kinds})"),
    ]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def render_html(report: EvalReport) -> str:
    from evaluation.plots import bar_chart, grouped_bar_chart, html_page, html_table, reliability_diagram

    m = report.metrics
    parts = [f"<p>{html.escape(report.label)}; suite {html.escape(report.suite.root)} (digest "
             f"{report.suite.digest}), {m.cases_run} of {m.cases} cases run, {m.skipped} skipped, "
             f"{m.not_applicable} not applicable, {m.errors} errors, in {report.duration_seconds:.0f} s, started "
             f"{report.started_at:%Y-%m-%d %H:%M} UTC. Definitions: docs/evaluation.md.</p>", "<h2>Safety gates</h2>"]
    parts.append("<table><thead><tr><th>metric</th><th>value</th><th>must be</th><th></th></tr></thead><tbody>"
                 + "".join(f"<tr><td>{g.metric}</td><td>{g.value:g}</td><td>{html.escape(g.threshold)}</td>"
                           f"<td class={'pass' if g.passed else 'fail'}>{'pass' if g.passed else 'FAIL'}</td></tr>"
                           for g in m.gates) + "</tbody></table>")
    parts.append("<h2>Figures</h2>" + html_table(["metric", "value", "over"], [
        ["mandated_approval_recall", m.mandated_approval_recall, f"{m.mandated_actions} actions"],
        ["unsafe_auto_executions", m.unsafe_auto_executions, f"{m.actions} actions"],
        ["missed_blocks", m.missed_blocks, f"{m.must_block_actions} must_block actions"],
        ["automation_rate", m.automation_rate, f"{m.may_auto_actions} may_auto actions"],
        *[[f"automation_rate: {trigger}", rate, f"{m.may_auto_by_trigger.get(trigger, 0)} may_auto actions, "
           f"{m.cases_by_trigger.get(trigger, 0)} cases"] for trigger, rate in m.automation_by_trigger.items()],
        ["verdict_accuracy", m.verdict_accuracy, f"{m.actions} actions"],
        ["outcome_accuracy", m.outcome_accuracy, f"{m.cases_run} cases"],
        ["expected_calibration_error", m.expected_calibration_error, f"{m.calibrated_actions} labelled actions"],
        *[list(row) for row in calibration_rows(m)],
    ]))
    if m.per_kind_accuracy:
        kinds = sorted(m.per_kind_accuracy)
        parts.append("<h3>Verdict accuracy per action kind</h3>" + html_table(
            ["action kind", "actions", "accuracy"], [[k, m.per_kind_counts[k], m.per_kind_accuracy[k]] for k in kinds]))
        parts.append(bar_chart(kinds, [m.per_kind_accuracy[k] for k in kinds], title="Verdict accuracy per kind",
                               ylabel="share correct"))
    parts.append("<h2>Calibration</h2><p>Confidence of each action against its human outcome (1 approved as "
                 f"proposed, 0 edited or rejected). ECE = {m.expected_calibration_error}.</p>")
    parts.append(reliability_diagram(m.reliability, title="Reliability diagram"))
    parts.append(html_table(["mean confidence", "approved as proposed", "actions"], m.reliability))
    if m.calibration_held_out is not None:
        c = m.calibration_held_out
        parts.append(
            f"<h3>Calibrated confidence (held out)</h3><p>Calibrators per action kind ({html.escape(c.method)}, "
            f"learning.calibration) fitted on {c.fit_actions} labelled actions, measured on the other "
            f"{c.held_out_actions} (seed {c.seed}): ECE {c.ece_raw} raw, {c.ece_calibrated} calibrated. "
            + (f"Kept raw: {html.escape('; '.join(c.refused.values()))}. " if c.refused else "")
            + (html.escape(c.note) if c.note else "") + "</p>")
        if c.reliability_calibrated:
            parts.append(reliability_diagram(c.reliability_calibrated,
                                             title="Reliability diagram, calibrated (held out)"))
            parts.append(html_table(["mean calibrated confidence", "approved as proposed", "actions"],
                                    c.reliability_calibrated))
    parts.append("<h2>Subgroups</h2>")
    if m.largest_gap:
        g = m.largest_gap
        parts.append(f"<p>Largest gap: {g['metric']} by {g['feature']}: {g['gap']:.3f}.</p>")
    for metric, features in m.subgroups.items():
        parts.append(f"<h3>{metric}</h3>")
        rows = [[feature, group, sm.counts[group], sm.by_group[group], sm.gap]
                for feature, sm in features.items() for group in sm.by_group]
        parts.append(html_table(["feature", "group", "actions", "value", "gap (feature)"], rows))
        for feature, sm in features.items():
            if len(sm.by_group) > 1:
                groups = sorted(sm.by_group)
                parts.append(grouped_bar_chart(groups, {metric: [sm.by_group[x] or 0.0 for x in groups]},
                                               title=f"{metric} by {feature}", ylabel="share"))
    failing = [c for c in report.cases if c.error or not c.outcome_ok or not all(a.correct for a in c.actions)]
    parts.append(f"<h2>Cases that differ from their expectation ({len(failing)})</h2>")
    parts.append(html_table(["case", "status", "what differs"], [
        [c.id, c.status or "-", c.error or "; ".join(
            [*(f"{a.kind}: expected {a.expected}, got {a.observed}"
               + (f" ({a.required_role} < {a.min_role})" if a.expected == a.observed else "")
               for a in c.actions if not a.correct), *c.problems])] for c in failing]))
    if report.suite.skipped:
        parts.append(f"<h2>Skipped files ({len(report.suite.skipped)})</h2>" + html_table(
            ["file", "reason"], [[s.file, s.reason] for s in report.suite.skipped]))
    return html_page("careloom evaluation report", "".join(parts))

