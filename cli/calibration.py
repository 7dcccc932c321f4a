"""``careloom model calibrate fit|show``: the routing confidence's per-kind calibrators (issue 26;
docs/calibration.md).

``fit`` fits a calibrator per action kind (isotonic or Platt) on supervisors' decisions and writes a versioned
artifact (``calibrators.joblib`` + ``manifest.json``) to ``<state_dir>/calibration/versions/<version>``, then
installs it as ``<state_dir>/calibration/current``, where the worker's planner activities read it (``--no-install``
to only write it). Decisions come from the decision ledger (``--from ledger``; each decided item needs its raw
confidence at request time) or from an evaluation report's labelled actions (``--from eval-report --report
PATH``). A kind with fewer than ``--min-decisions`` decisions is refused by name and keeps its raw confidence; a
fit where no kind qualifies exits 1 naming the problem. ``show`` verifies and prints the installed (or a given)
calibrator's manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from cli.output import console, err_console, fail, plain, print_json, safe, say
from runtime.errors import CareloomError

__all__ = ["app"]

app = typer.Typer(help="Calibrate the routing confidence per action kind on supervisors' decisions.",
                  no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _state_dir() -> Path:
    from cli.common import settings

    return settings().state_dir


def _ledger_decisions() -> tuple[list[Any], str]:
    from cli.common import settings
    from learning.calibration import decisions_from_ledger
    from store.connect import configured_database
    from store.ledger import DecisionLedger

    ledger = DecisionLedger(configured_database(settings()))
    try:
        read = decisions_from_ledger(ledger.entries())
    finally:
        ledger.close()
    note = (f"ledger: {len(read.decisions)} verified decisions with a raw confidence, {read.without_confidence} "
            f"decided items without one (requested before the ledger recorded it), {read.unverified} unverified "
            f"decisions not used, {read.undecided} undecided")
    return read.decisions, note


def _report_decisions(report: Path) -> tuple[list[Any], str]:
    from learning.calibration import Decision

    try:
        document = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        fail(f"cannot read the evaluation report {report} ({err.__class__.__name__}); pass the report.json "
             "written by `careloom eval run --report DIR`", code=2)
        raise AssertionError from None
    if not str(document.get("format", "")).startswith("careloom-eval-report/"):
        fail(f"{report} is not a careloom evaluation report (format {document.get('format')!r})", code=2)
    decisions = [Decision(a["kind"], float(a["confidence"]), int(a["label"]))
                 for case in document.get("cases", []) for a in case.get("actions", [])
                 if a.get("label") is not None]
    return decisions, (f"evaluation report {report.name} ({document.get('label')}): {len(decisions)} labelled "
                       "actions (scripted reviewer decisions)")


@app.command()
def fit(
    source: Annotated[str, typer.Option("--from", help="ledger (supervisors' decisions) or eval-report.")]
    = "ledger",
    report: Annotated[Path | None, typer.Option(help="report.json of `careloom eval run --report DIR` "
                                                     "(with --from eval-report).")] = None,
    method: Annotated[str, typer.Option(help="isotonic or platt.")] = "isotonic",
    min_decisions: Annotated[int, typer.Option(min=1, help="Decisions a kind needs to be calibrated.")] = 200,
    version: Annotated[str | None, typer.Option(help="Version label; default the UTC time.")] = None,
    out: Annotated[Path | None, typer.Option(help="Artifact folder; default "
                                                  "<state_dir>/calibration/versions/<version>.")] = None,
    install: Annotated[bool, typer.Option(help="Install as <state_dir>/calibration/current (the worker's).")]
    = True,
    as_json: JsonFlag = False,
) -> None:
    """Fit a calibrator per action kind and write (and install) the versioned artifact."""
    from datetime import UTC, datetime

    from learning.calibration import (CALIBRATION_DIR, METHODS, fit_calibrators, install_calibrators,
                                      save_calibrators)

    if method not in METHODS:
        fail(f"--method must be one of {', '.join(METHODS)}, not {method!r}", code=2)
    kind: Literal["ledger", "eval-report"]
    if source == "ledger":
        kind = "ledger"
        decisions, note = _ledger_decisions()
    elif source == "eval-report":
        kind = "eval-report"
        if report is None:
            fail("--from eval-report needs --report PATH (report.json of `careloom eval run --report DIR`)", code=2)
            return
        decisions, note = _report_decisions(report)
    else:
        fail(f"--from must be ledger or eval-report, not {source!r}", code=2)
        return
    try:
        fitted = fit_calibrators(decisions, min_decisions=min_decisions, method=method)
    except CareloomError as err:
        fail(f"no calibrator fitted: {err} ({note}); the planners keep their raw confidence")
        return
    label = version or datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    state = _state_dir()
    folder = out or state / CALIBRATION_DIR / "versions" / label
    manifest = save_calibrators(fitted, folder, version=label, source=f"{kind}: {note}")
    installed, gate = None, None
    if install:
        # Installing changes routing (confidence against the policy's minimum): the evaluation gate runs with the
        # new calibrator first, as a model's promotion does; a failed gate leaves the installed one in place.
        from cli.eval import suite_gate

        err_console.print("running the evaluation gate (the scenario suite, offline planner) with the new "
                          "calibrator before installing it…")
        try:
            passed, gate = suite_gate(calibration=folder)
        except CareloomError as err:
            fail(f"the calibrator was written to {folder} but not installed: {err}")
            return
        if not passed:
            fail(f"the calibrator was written to {folder} but not installed: the evaluation gate failed with it "
                 f"({gate}); the planners keep the calibrator installed before (or their raw confidence)")
        try:
            installed = install_calibrators(folder, state)
        except (CareloomError, OSError) as err:
            fail(f"the calibrator was written to {folder} but not installed: {err}")
    if as_json:
        print_json({"artifact": str(folder), "installed": str(installed) if installed else None,
                    "gate": gate, "manifest": manifest})
        return
    for why in fitted.refused.values():
        err_console.print(f"[yellow]refused[/] {safe(why)}", soft_wrap=True, highlight=False)
    _print_manifest(manifest)
    say(f"artifact: {folder}" + (f"\ninstalled: {installed} (planner activities pick it up on their next plan); "
                                 f"gate passed: {gate}" if installed else ""))


@app.command()
def show(
    path: Annotated[Path | None, typer.Option(help="Artifact folder; default <state_dir>/calibration/current.")]
    = None,
    as_json: JsonFlag = False,
) -> None:
    """Verify a calibrator artifact (digest) and print its manifest: version, method, per-kind counts."""
    from learning.calibration import current_path, load_calibrators

    folder = path or current_path(_state_dir())
    try:
        loaded = load_calibrators(folder)
    except CareloomError as err:
        fail(f"{err}; the planners use their raw confidence")
        return
    if as_json:
        print_json({"artifact": str(loaded.folder), "manifest": loaded.manifest})
        return
    _print_manifest(loaded.manifest)
    say(f"artifact: {loaded.folder} (calibrator file sha256 verified)")


def _print_manifest(manifest: dict[str, Any]) -> None:
    say(f"{manifest['name']} {manifest['version']} ({manifest['method']}, min {manifest.get('min_decisions')} "
        f"decisions a kind), fitted on {manifest.get('fitted_on', {}).get('decisions')} decisions "
        f"(sha256 {str(manifest.get('fitted_on', {}).get('sha256', ''))[:16]}…)")
    table = Table(title="Calibrators per action kind")
    for column in ("action kind", "decisions", "approved", "ECE raw", "ECE fitted (in sample)", "status"):
        table.add_column(column)
    for kind, counts in sorted(manifest.get("counts", {}).items()):
        status = "calibrated" if kind in manifest.get("kinds", []) else "raw (refused)"
        table.add_row(*map(plain, (kind, counts.get("decisions"), counts.get("approved"), counts.get("ece_raw"),
                                   counts.get("ece_fitted_in_sample", "-"), status)))
    console.print(table)
