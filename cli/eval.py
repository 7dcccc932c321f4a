"""``careloom eval run`` and ``careloom eval compare`` (evaluation/): the scenario suite as a CI gate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.progress import Progress
from rich.table import Table

from cli.common import run, settings
from cli.output import console, err_console, fail, plain, print_json, safe
from runtime.logging import configure_logging

app = typer.Typer(help="The scenario suite: safety, calibration and subgroup figures; a CI gate.",
                  no_args_is_help=True)

SHIPPED_SUITE = Path(__file__).resolve().parent.parent / "evaluation" / "suite"


def calibration_for(choice: str, state_dir: Path) -> Path | None:
    """The calibrator the evaluation applies: ``installed`` (default) the worker's ``<state_dir>/calibration/current``
    when there is one, ``none`` the raw confidence, else an artifact folder (which must exist)."""
    from learning.calibration import current_path

    if choice == "none":
        return None
    if choice == "installed":
        current = current_path(state_dir)
        return current if current.exists() else None
    path = Path(choice)
    if not path.is_dir():
        fail(f"--calibration {choice!r} is not a calibrator folder: pass installed, none or the folder of "
             "`careloom model calibrate fit --out DIR`", code=2)
    return path


def suite_gate(*, scorer: object = None, calibration: Path | None = None) -> tuple[bool, str]:
    """The evaluation gate as ``careloom eval run --planner offline`` runs it (the shipped suite on a fresh stack
    of its own, the offline planner): (passed, summary). ``scorer``: a learned risk model the stack serves;
    ``calibration``: a confidence calibrator its planners apply. Passes when every safety gate passes, no case
    errored and every case was judged. Used by the promotion of a model and the installation of a calibrator."""
    from evaluation.metrics import compute
    from evaluation.runner import run_suite
    from evaluation.scenarios import load_suite

    loaded = load_suite(SHIPPED_SUITE)
    cfg = settings()
    configure_logging("ERROR", cfg.log_format)  # the suite's runs log every step; the gate's outcome is the news
    try:
        result = run(run_suite(cfg, loaded, "offline", scorer=scorer, calibration=calibration))  # type: ignore[arg-type]
    finally:
        configure_logging(cfg.log_level, cfg.log_format)  # the caller's logging as it was configured
    metrics = compute(result.results, skipped=len(loaded.skipped), not_applicable=len(result.not_applicable),
                      allow_skipped=False)
    failed = [g.metric for g in metrics.gates if not g.passed]
    passed = metrics.passed and not metrics.infrastructure_errors
    summary = (f"suite {loaded.digest[:12]}: {len(result.results)} cases, gates "
               f"{len(metrics.gates) - len(failed)}/{len(metrics.gates)} passed"
               + (f", failed: {', '.join(failed)}" if failed else "")
               + (f", {metrics.infrastructure_errors} case(s) not judged" if metrics.infrastructure_errors else "")
               + (f"; calibrator {result.calibrator}" if result.calibrator else ""))
    if metrics.expected_calibration_error is not None:
        summary += f"; ECE {metrics.expected_calibration_error:.3f}"
    return passed, summary


@app.command("run")
def run_(
    suite: Annotated[Path, typer.Option(help="Folder of careloom-scenario/1 files.")] = SHIPPED_SUITE,
    planner: Annotated[str, typer.Option(help="offline (the rules), model (the configured CARELOOM_MODEL) or "
                                              "scripted (the local scripted model server).")] = "offline",
    select: Annotated[str | None, typer.Option(help="Only cases whose id contains this text or with this tag.")]
    = None,
    report: Annotated[Path | None, typer.Option(help="Write report.json and report.html into this folder.")] = None,
    label: Annotated[str | None, typer.Option(help="Name of this evaluation in reports and compare "
                                                   "(default: planner and policy).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Cases in flight at once.")] = 16,
    allow_skipped: Annotated[bool, typer.Option(help="Do not fail the gate for scenario files that did not "
                                                     "load (they are still listed).")] = False,
    calibration: Annotated[str, typer.Option(help="The confidence calibrator the planners apply: installed (the "
                                                  "worker's, <state_dir>/calibration/current, if any), none, or "
                                                  "an artifact folder.")] = "installed",
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as JSON.")] = False,
) -> None:
    """Run every case as real workflow runs on a fresh embedded stack (or the configured cluster) with a
    scripted reviewer; print the figures. Exit 1 when a safety gate fails or a case errored, 2 on bad usage, 3
    when every gate passed but some cases could not be judged because Temporal did not answer the harness in
    time (retries included): an infrastructure problem, not a safety finding; run again."""
    from evaluation.metrics import compute
    from evaluation.report import EvalReport, SuiteInfo, write_report
    from evaluation.runner import EvalUsageError, check_planner, run_suite
    from evaluation.scenarios import load_suite
    from learning.calibration import CalibrationError

    if planner not in ("offline", "model", "scripted"):
        fail(f"--planner must be offline, model or scripted, not {planner!r}", code=2)
    try:
        loaded = load_suite(suite, select=select)
    except FileNotFoundError as err:
        fail(str(err), code=2)
    if not loaded.cases:
        fail(f"no cases to run in {suite}" + (f" matching {select!r}" if select else "")
             + (f" ({len(loaded.skipped)} files skipped: {loaded.skipped[0].file}: {loaded.skipped[0].reason})"
                if loaded.skipped else "") + "; pass --suite DIR with careloom-scenario/1 files", code=2)
    cfg = settings()
    calibrator = calibration_for(calibration, cfg.state_dir)
    configure_logging("ERROR", cfg.log_format)  # the runs' own lines (refused model answers...) are the cases
    for skipped in loaded.skipped:
        err_console.print(f"[yellow]skipped[/] {safe(skipped.file)}: {safe(skipped.reason)}")
    mode: Literal["offline", "model", "scripted"] = planner  # type: ignore[assignment]
    applicable = sum(1 for c in loaded.cases if c.model is None or mode == "scripted")
    try:
        check_planner(cfg, mode)
    except EvalUsageError as err:
        fail(str(err), code=2)
    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task(f"{applicable} cases ({mode} planner)", total=applicable)
        try:
            result = run(run_suite(cfg, loaded, mode, concurrency=concurrency, calibration=calibrator,
                                   progress=lambda _: progress.advance(task)))
        except CalibrationError as err:
            fail(f"the calibrator {calibrator} cannot be applied: {err}", code=2)
    metrics = compute(result.results, skipped=len(loaded.skipped), not_applicable=len(result.not_applicable),
                      allow_skipped=allow_skipped)
    document = EvalReport(
        label=label or f"{mode} planner, {', '.join(result.policy_ids)}"
        + (f", calibrator {result.calibrator}" if result.calibrator else ""), planner=mode,
        policy_ids=result.policy_ids, started_at=result.started_at, duration_seconds=result.duration_seconds,
        calibrator=result.calibrator,
        suite=SuiteInfo(root=str(suite), digest=loaded.digest, cases=len(loaded.cases), skipped=loaded.skipped,
                        not_applicable=result.not_applicable),
        metrics=metrics, cases=sorted(result.results, key=lambda c: c.id))
    written = None
    if report is not None:
        try:
            written = write_report(document, report)
        except OSError as err:
            fail(f"cannot write the report into {report}: {err.strerror}; pass a writable folder", code=2)
    if as_json:
        print_json(document)
    else:
        _print(document)
        if written:
            console.print(safe(f"report: {written[0]} and {written[1]}"), soft_wrap=True, highlight=False)
    if not document.passed:
        raise typer.Exit(1)
    if document.metrics.infrastructure_errors:
        err_console.print(f"[yellow]incomplete:[/] {document.metrics.infrastructure_errors} case(s) not judged: "
                          "Temporal did not answer the harness in time (retries included). The gates passed on "
                          "the cases judged; run the evaluation again on a less loaded machine or cluster")
        raise typer.Exit(3)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if float(value).is_integer() else f"{value:.4f}"


def _print(document: object) -> None:
    from evaluation.report import EvalReport

    assert isinstance(document, EvalReport)
    m = document.metrics
    console.print(safe(f"{document.label}: {m.cases_run}/{m.cases} cases run in {document.duration_seconds:.0f} s, "
                       f"{m.skipped} files skipped, {m.not_applicable} not applicable, {m.errors} errors, "
                       f"{m.infrastructure_errors} infrastructure errors "
                       f"(suite {document.suite.digest})"), soft_wrap=True, highlight=False)
    table = Table(title="Evaluation")
    for column in ("metric", "value", "over"):
        table.add_column(column)
    for name, value, over in (
        ("mandated_approval_recall", m.mandated_approval_recall, f"{m.mandated_actions} mandated actions"),
        ("unsafe_auto_executions", m.unsafe_auto_executions, f"{m.actions} actions"),
        ("missed_blocks", m.missed_blocks, f"{m.must_block_actions} must_block actions"),
        ("automation_rate", m.automation_rate, f"{m.may_auto_actions} may_auto actions"),
        ("verdict_accuracy", m.verdict_accuracy, f"{m.actions} actions"),
        ("outcome_accuracy", m.outcome_accuracy, f"{m.cases_run} cases"),
        ("expected_calibration_error", m.expected_calibration_error, f"{m.calibrated_actions} labelled actions"),
    ):
        table.add_row(*map(plain, (name, _fmt(value), over)))
    from evaluation.report import calibration_rows

    for name, value, over in calibration_rows(m):
        table.add_row(*map(plain, (name, _fmt(value), over)))
    for trigger, rate in m.automation_by_trigger.items():
        table.add_row(*map(plain, (f"automation_rate: {trigger}", _fmt(rate),
                                   f"{m.may_auto_by_trigger.get(trigger, 0)} may_auto actions")))
    for kind, accuracy in m.per_kind_accuracy.items():
        table.add_row(*map(plain, (f"accuracy: {kind}", _fmt(accuracy), f"{m.per_kind_counts[kind]} actions")))
    if m.largest_gap:
        g = m.largest_gap
        table.add_row(*map(plain, ("largest subgroup gap", _fmt(g["gap"]), f"{g['metric']} by {g['feature']}")))
    console.print(table)
    for case in document.cases:
        wrong = [f"{a.kind} expected {a.expected}, got {a.observed}"
                 + (f" ({a.required_role} < {a.min_role})" if a.expected == a.observed else "")
                 for a in case.actions if not a.correct]
        if case.infrastructure_error:
            console.print(f"[yellow]not judged[/] {safe(case.id)}: {safe(case.infrastructure_error)}", soft_wrap=True,
                          highlight=False)
        elif case.error or wrong or case.problems:
            console.print(f"[red]differs[/] {safe(case.id)}: " + safe("; ".join(
                [case.error] if case.error else [*wrong, *case.problems])), soft_wrap=True, highlight=False)
    for gate in m.gates:
        mark = "[green]pass[/]" if gate.passed else "[bold red]FAIL[/]"
        console.print(f"gate {safe(gate.metric)} = {_fmt(gate.value)} (must be {safe(gate.threshold)}): {mark}")


@app.command("compare")
def compare_(
    a: Annotated[Path, typer.Argument(help="report.json of the first evaluation.")],
    b: Annotated[Path, typer.Argument(help="report.json of the second evaluation (same suite).")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")] = False,
) -> None:
    """Two evaluations of one suite side by side (policies, planners, prompt versions), with every action whose
    verdict changed. Exit 2 when the files are not reports of the same suite."""
    from evaluation.compare import ReportError, compare, load_report

    try:
        comparison = compare(load_report(a), load_report(b))
    except ReportError as err:
        fail(str(err), code=2)
        return
    if as_json:
        print_json(comparison)
        return
    table = Table(title=plain(f"suite {comparison.suite_digest}"))
    table.add_column("metric", no_wrap=True)
    for column in (f"A: {comparison.a}", f"B: {comparison.b}"):
        table.add_column(plain(column), overflow="fold")
    for name, va, vb in comparison.figures:
        table.add_row(*map(plain, (name, _fmt(va), _fmt(vb))))
    for name, pa, pb in comparison.gates:
        table.add_row(*map(plain, (f"gate {name}", "pass" if pa else "FAIL", "pass" if pb else "FAIL")))
    console.print(table)
    console.print(f"{len(comparison.changed)} actions changed verdict")
    if comparison.changed:
        changes = Table()
        for column in ("case", "action", "expected", "A", "B"):
            changes.add_column(column, overflow="fold")
        for c in comparison.changed:
            changes.add_row(*map(plain, (c.case, f"{c.action} ({c.kind})", c.expected or "-", c.a, c.b)))
        console.print(changes)
    for side, ids in (("A", comparison.only_in_a), ("B", comparison.only_in_b)):
        if ids:
            console.print(safe(f"only in {side}: {', '.join(ids)}"), soft_wrap=True, highlight=False)
