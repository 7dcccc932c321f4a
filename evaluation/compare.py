"""``careloom eval compare A B``: two evaluation reports of one suite, side by side."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ValidationError

from evaluation.oracle import ActionResult
from evaluation.report import FORMAT, EvalReport

__all__ = ["Comparison", "compare", "load_report"]

FIGURES = ("mandated_approval_recall", "unsafe_auto_executions", "missed_blocks", "automation_rate", "verdict_accuracy",
           "outcome_accuracy", "expected_calibration_error", "errors")


class ReportError(ValueError):
    """A report file cannot be compared; the message names the file and the fix."""


class ChangedAction(BaseModel):
    case: str
    action: str
    kind: str
    expected: str | None
    a: str
    b: str


class Comparison(BaseModel):
    a: str
    b: str
    suite_digest: str
    figures: list[tuple[str, float | None, float | None]]
    gates: list[tuple[str, bool, bool]]
    changed: list[ChangedAction]
    only_in_a: list[str]
    only_in_b: list[str]


def load_report(path: Path) -> EvalReport:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ReportError(f"{path}: cannot read it ({err.strerror}); pass a report.json written by "
                          "`careloom eval run --report DIR`") from None
    try:
        report = EvalReport.model_validate_json(text)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(file)"
        raise ReportError(f"{path}: not a {FORMAT} report ({where}: {first['msg']}); pass a report.json "
                          "written by `careloom eval run --report DIR`") from None
    if report.format != FORMAT:
        raise ReportError(f"{path}: format {report.format!r}, this careloom reads {FORMAT}")
    return report


def _verdict(action: object) -> str:
    observed = getattr(action, "observed", None) or "not judged"
    role = getattr(action, "required_role", None)
    return f"{observed} ({role})" if role else observed


def _by_kind(actions: list[ActionResult]) -> dict[tuple[str, int], ActionResult]:
    """Actions keyed by (kind, n-th of that kind): planners name their actions differently."""
    seen: dict[str, int] = {}
    keyed = {}
    for action in actions:
        seen[action.kind] = seen.get(action.kind, 0) + 1
        keyed[(action.kind, seen[action.kind])] = action
    return keyed


def compare(a: EvalReport, b: EvalReport) -> Comparison:
    """Raises ReportError unless both ran the same suite (the same digest)."""
    if a.suite.digest != b.suite.digest:
        raise ReportError(f"the reports ran different suites (digest {a.suite.digest} vs {b.suite.digest}); "
                          "run both evaluations on the same --suite folder")
    figures = [(name, getattr(a.metrics, name), getattr(b.metrics, name)) for name in FIGURES]
    figures += [(f"automation_rate: {trigger}", a.metrics.automation_by_trigger.get(trigger),
                 b.metrics.automation_by_trigger.get(trigger))
                for trigger in sorted({*a.metrics.automation_by_trigger, *b.metrics.automation_by_trigger})]
    gates_b = {g.metric: g.passed for g in b.metrics.gates}
    gates = [(g.metric, g.passed, gates_b.get(g.metric, False)) for g in a.metrics.gates]
    cases_a, cases_b = {c.id: c for c in a.cases}, {c.id: c for c in b.cases}
    changed = []
    for case_id in sorted(cases_a.keys() & cases_b.keys()):
        acts_a, acts_b = _by_kind(cases_a[case_id].actions), _by_kind(cases_b[case_id].actions)
        for key in sorted(acts_a.keys() | acts_b.keys()):
            x, y = acts_a.get(key), acts_b.get(key)
            va, vb = (_verdict(x) if x else "not proposed"), (_verdict(y) if y else "not proposed")
            if va != vb:
                either = x or y
                assert either is not None
                changed.append(ChangedAction(case=case_id, action=either.action_id, kind=either.kind,
                                             expected=either.expected, a=va, b=vb))
    return Comparison(a=a.label, b=b.label, suite_digest=a.suite.digest, figures=figures, gates=gates,
                      changed=changed, only_in_a=sorted(cases_a.keys() - cases_b.keys()),
                      only_in_b=sorted(cases_b.keys() - cases_a.keys()))
