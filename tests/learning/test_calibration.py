"""Calibrated routing confidence (issue 26): per-kind calibrators fitted on decisions, their refusals, the
versioned artifact's digest check, the planner activities applying it, and ECE before/after on held-out actions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from agents.care_gap_planner import GapPlannerActivity
from agents.planner import PlannerActivity, PlannerOutput
from agents.planner_calibration import RAW_CONFIDENCE_SIGNAL, PlannerCalibration
from evaluation.metrics import compute, held_out_calibration
from evaluation.oracle import ActionResult, CaseResult
from guardrails.actions import ProposedAction
from learning.calibration import (CALIBRATOR_FILE, CalibrationError, CalibratorIntegrityError, Decision,
                                  current_path, decisions_from_ledger, expected_calibration_error, fit_calibrators,
                                  install_calibrators, load_calibrators, save_calibrators)
from store.ledger_entries import LedgerEntry
from tools.outreach import SendOutreachArgs
from tools.tasks import CreateTaskArgs

DUE = datetime(2026, 3, 5, 17, tzinfo=UTC)


def _synthetic(n: int, seed: int, kinds: tuple[str, ...] = ("send_outreach", "create_task")) -> list[Decision]:
    """Overconfident raw confidence: P(approved as proposed) = raw ** 3 for outreach, a shifted step for tasks."""
    rng = np.random.default_rng(seed)
    out = []
    for kind in kinds:
        raw = rng.uniform(0.3, 1.0, n)
        p = raw ** 3 if kind == "send_outreach" else np.where(raw > 0.7, 0.85, 0.25)
        labels = (rng.uniform(size=n) < p).astype(int)
        out += [Decision(kind, round(float(c), 4), int(y)) for c, y in zip(raw, labels, strict=True)]
    return out


def _ece(fitted, decisions: list[Decision]) -> tuple[float, float]:  # noqa: ANN001
    raw = [d.confidence for d in decisions]
    labels = [d.label for d in decisions]
    calibrated = fitted.calibrate_many([d.kind for d in decisions], raw)
    return expected_calibration_error(raw, labels), expected_calibration_error(calibrated, labels)


@pytest.mark.parametrize(("method", "kinds"), [
    ("isotonic", ("send_outreach", "create_task")),
    ("platt", ("send_outreach",)),  # a sigmoid cannot follow create_task's step; isotonic can
])
def test_fit_on_miscalibrated_decisions_calibrates_held_out(method: str, kinds: tuple[str, ...]) -> None:
    fit_on, held_out = _synthetic(1500, seed=1, kinds=kinds), _synthetic(1500, seed=2, kinds=kinds)
    fitted = fit_calibrators(fit_on, min_decisions=200, method=method)
    assert sorted(fitted.estimators) == sorted(kinds) and not fitted.refused
    before, after = _ece(fitted, held_out)
    assert before > 0.15
    assert after <= 0.05, (method, before, after)
    # monotone: a higher raw confidence never gets a lower calibrated one
    grid = [i / 20 for i in range(21)]
    values = [fitted.calibrate("send_outreach", g) for g in grid]
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))


def test_a_kind_under_the_minimum_is_refused_by_name_and_keeps_raw() -> None:
    decisions = _synthetic(400, seed=3, kinds=("send_outreach",)) + _synthetic(50, seed=4, kinds=("create_task",))
    fitted = fit_calibrators(decisions, min_decisions=200)
    assert list(fitted.estimators) == ["send_outreach"]
    assert "create_task: 50 decisions, fewer than the minimum 200" in fitted.refused["create_task"]
    assert fitted.calibrate("create_task", 0.9) is None
    assert fitted.calibrate_many(["create_task"], [0.9]) == [0.9]
    with pytest.raises(CalibrationError, match=r"no action kind could be calibrated: create_task: 50 decisions"):
        fit_calibrators(_synthetic(50, seed=4, kinds=("create_task",)), min_decisions=200)
    one_label = [Decision("draft_care_plan", 0.5, 1)] * 300
    with pytest.raises(CalibrationError, match="all 300 decisions were approved as proposed"):
        fit_calibrators(one_label, min_decisions=200)
    with pytest.raises(CalibrationError, match="unknown calibration method"):
        fit_calibrators(decisions, method="beta")


def _entry(seq: int, workflow: str, approval: str, event: str, tool: str = "send_outreach",
           verified: bool | None = None) -> LedgerEntry:
    """An entry; a decision entry is verified (as the worker marks a signed decision) unless ``verified`` says."""
    decision = event in ("approved", "edited", "rejected", "signed_off")
    return LedgerEntry(event_id=f"{workflow}/{seq}", workflow_id=workflow, approval_id=approval, event=event,
                       tool=tool, actor="u1", at=DUE, digest="0" * 64, policy_id="p/1",
                       verified=verified if verified is not None else (True if decision else None))


def test_ledger_decisions_label_final_outcomes_and_need_the_raw_confidence() -> None:
    entries = [_entry(1, "w1", "a1", "requested"), _entry(2, "w1", "a1", "approved"),
               _entry(3, "w2", "a1", "requested"), _entry(4, "w2", "a1", "edited"),
               _entry(5, "w3", "a1", "requested"), _entry(6, "w3", "a1", "signed_off"),
               _entry(7, "w3", "a1", "approved"),
               _entry(8, "w4", "a1", "requested"), _entry(9, "w4", "a1", "rejected"),
               _entry(10, "w5", "a1", "requested"), _entry(11, "w5", "a1", "expired")]
    read = decisions_from_ledger(entries, {("w1", "a1"): 0.9, ("w2", "a1"): 0.8, ("w3", "a1"): 0.7})
    assert sorted((d.confidence, d.label) for d in read.decisions) == [(0.7, 1), (0.8, 0), (0.9, 1)]
    assert read.without_confidence == 1 and read.undecided == 1
    # a decision the worker could not verify (a run started through Temporal, no signed decision) is no label
    forged = [_entry(12, "w6", "a1", "requested"), _entry(13, "w6", "a1", "approved", verified=False)]
    read = decisions_from_ledger([*entries, *forged], {("w1", "a1"): 0.9, ("w2", "a1"): 0.8, ("w3", "a1"): 0.7,
                                                       ("w6", "a1"): 0.2})
    assert (3, 1) == (len(read.decisions), read.unverified)
    # the ledger alone does not carry the raw confidence: a clear refusal, not a silent empty fit
    with pytest.raises(CalibrationError, match="carry no raw confidence"):
        fit_calibrators(entries)


def test_artifact_round_trip_and_digest_mismatch_is_refused(tmp_path: Path) -> None:
    fitted = fit_calibrators(_synthetic(300, seed=5), min_decisions=200)
    manifest = save_calibrators(fitted, tmp_path / "v1", version="v1", source="synthetic")
    assert manifest["kinds"] == ["create_task", "send_outreach"]
    assert manifest["counts"]["send_outreach"]["decisions"] == 300
    assert len(manifest["fitted_on"]["sha256"]) == 64 and len(manifest["calibrator_file"]["sha256"]) == 64
    loaded = load_calibrators(tmp_path / "v1")
    assert loaded.version == "v1"
    assert loaded.calibrate("send_outreach", 0.6) == fitted.calibrate("send_outreach", 0.6)
    with (tmp_path / "v1" / CALIBRATOR_FILE).open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(CalibratorIntegrityError, match="does not match its manifest"):
        load_calibrators(tmp_path / "v1")
    with pytest.raises(CalibratorIntegrityError, match="not a calibrator artifact"):
        load_calibrators(tmp_path / "nothing")


def _proposals() -> list[ProposedAction]:
    return [
        ProposedAction(action_id="a1-message", rationale="check in", confidence=0.95, arguments=SendOutreachArgs(
            channel="sms", template="post-discharge-check-in", message="How are you doing?")),
        ProposedAction(action_id="a2-task", rationale="follow up", confidence=0.9, arguments=CreateTaskArgs(
            kind="follow-up-visit", queue="care-management/post-discharge", priority="routine",
            description="Book the follow-up visit", reason="discharged", due=DUE)),
    ]


class _Planner:
    name = "fake"

    async def plan(self, data: object) -> PlannerOutput:
        return PlannerOutput(planner="fake/1", proposals=_proposals())

    def plan_for_review(self, data: object, reason: str) -> PlannerOutput:
        return PlannerOutput(planner="fake/1", proposals=_proposals())


def _signal(action: ProposedAction):  # noqa: ANN202
    return next(s for s in action.signals if s.name == RAW_CONFIDENCE_SIGNAL)


async def test_planner_activities_apply_the_installed_calibrator(tmp_path: Path) -> None:
    state = tmp_path / "state"
    calibration = PlannerCalibration.for_state_dir(state)
    assert calibration.folder == current_path(state)
    host = PlannerActivity(_Planner(), _Planner(), calibration=calibration)  # type: ignore[arg-type]
    data = SimpleNamespace(fallback_reason=None)
    # nothing installed: the planner's raw confidence, untouched (no signal: nothing was done)
    out = await host.plan_outreach(data)  # type: ignore[arg-type]
    assert [p.confidence for p in out.proposals] == [0.95, 0.9]
    assert all(not p.signals for p in out.proposals)
    # install one fitted on outreach only (tasks refused: too few decisions)
    decisions = _synthetic(400, seed=6, kinds=("send_outreach",)) + _synthetic(20, seed=7, kinds=("create_task",))
    save_calibrators(fit_calibrators(decisions, min_decisions=200), tmp_path / "v2", version="v2")
    assert install_calibrators(tmp_path / "v2", state) == current_path(state)
    expected = load_calibrators(current_path(state)).calibrate("send_outreach", 0.95)
    for output in (await host.plan_outreach(data),  # type: ignore[arg-type]
                   await host.plan_outreach(SimpleNamespace(fallback_reason="model down"))):  # type: ignore[arg-type]
        message, task = output.proposals
        assert message.confidence == expected and expected < 0.95
        assert _signal(message).value == 0.95 and _signal(message).weight == 0.0
        assert "v2 (isotonic, 400 send_outreach decisions): raw 0.9500" in _signal(message).note
        assert task.confidence == 0.9 and "create_task: 20 decisions, fewer than the minimum" in _signal(task).note
    # the same calibration object serves the care-gap host
    gap_planner = SimpleNamespace(plan=lambda data: PlannerOutput(planner="gap/1", proposals=_proposals()))
    gaps = await GapPlannerActivity(gap_planner, calibration=calibration).plan_care_gaps(data)  # type: ignore[arg-type]
    assert gaps.proposals[0].confidence == expected
    # a tampered file: refused, raw confidence, the reason on the action
    with (current_path(state) / CALIBRATOR_FILE).open("ab") as handle:
        handle.write(b"x")
    out = await host.plan_outreach(data)  # type: ignore[arg-type]
    assert out.proposals[0].confidence == 0.95
    assert "refused" in _signal(out.proposals[0]).note and "does not match its manifest" in \
        _signal(out.proposals[0]).note
    # a host without a calibration leaves the planner's output as it is
    plain = await PlannerActivity(_Planner(), _Planner()).plan_outreach(data)  # type: ignore[arg-type]
    assert all(not p.signals for p in plain.proposals)


def _action(i: int, kind: str, confidence: float, label: int) -> ActionResult:
    return ActionResult(action_id=f"c{i}", kind=kind, expected="must_require_approval",
                        observed="must_require_approval", correct=True, status="executed", executed=True,
                        automatic=False, confidence=confidence, label=label)


def test_evaluation_reports_ece_before_and_after_on_held_out_actions() -> None:
    actions = [_action(i, d.kind, d.confidence, d.label) for i, d in enumerate(_synthetic(300, seed=8))]
    figures = held_out_calibration(actions)
    assert figures is not None
    assert figures.fit_actions == 300 and figures.held_out_actions == 300
    assert figures.ece_raw is not None and figures.ece_calibrated is not None
    assert figures.ece_raw > 0.15 and figures.ece_calibrated < figures.ece_raw
    assert figures.kinds_calibrated == ["create_task", "send_outreach"]
    again = held_out_calibration(actions)
    assert again == figures  # fixed seed
    # in a run's metrics the split does not depend on the order in which cases finished
    cases = [CaseResult(id=f"case-{i:03d}", program="outreach", actions=[a]) for i, a in enumerate(actions)]
    first = compute(cases).calibration_held_out
    assert first is not None and compute(list(reversed(cases))).calibration_held_out == first


def test_cli_fit_and_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_suite: Path) -> None:
    """fit runs the evaluation gate WITH the new calibrator before installing it (here on four shipped cases:
    the gate's own code path, the real stack), then show verifies the installed one."""
    from cli.calibration import app

    monkeypatch.setenv("CARELOOM_STATE_DIR", str(tmp_path / "state"))
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"format": "careloom-eval-report/1", "label": "synthetic", "cases": [
        {"actions": [{"kind": d.kind, "confidence": d.confidence, "label": d.label}
                     for d in _synthetic(250, seed=9)]}]}))
    runner = CliRunner()
    fitted = runner.invoke(app, ["fit", "--from", "eval-report", "--report", str(report), "--version", "t1",
                                 "--json"])
    assert fitted.exit_code == 0, fitted.output
    answer = json.loads(fitted.stdout)
    assert answer["manifest"]["version"] == "t1" and answer["installed"]
    assert "4 cases, gates" in answer["gate"] and "calibrator t1 (isotonic" in answer["gate"]
    shown = runner.invoke(app, ["show"])
    assert shown.exit_code == 0, shown.output
    assert "routing-confidence-calibrator t1" in shown.stdout and "send_outreach" in shown.stdout
    refused = runner.invoke(app, ["fit", "--from", "eval-report", "--report", str(report), "--min-decisions",
                                  "1000"])
    assert refused.exit_code == 1
    assert "fewer than the minimum 1000" in refused.stderr and "raw confidence" in refused.stderr
    ledger = runner.invoke(app, ["fit", "--from", "ledger"])
    assert ledger.exit_code == 1 and "no decisions with a raw confidence" in ledger.stderr
    with (current_path(tmp_path / "state") / CALIBRATOR_FILE).open("ab") as handle:
        handle.write(b"x")
    tampered = runner.invoke(app, ["show"])
    assert tampered.exit_code == 1 and "does not match its manifest" in tampered.stderr


def test_cli_fit_refuses_to_install_when_the_gate_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A calibrator whose evaluation gate fails is written but not installed; the installed one stays."""
    import cli.eval
    from cli.calibration import app

    monkeypatch.setenv("CARELOOM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(cli.eval, "suite_gate", lambda **_: (False, "gates 11/12 passed, failed: missed_blocks"))
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"format": "careloom-eval-report/1", "label": "synthetic", "cases": [
        {"actions": [{"kind": d.kind, "confidence": d.confidence, "label": d.label}
                     for d in _synthetic(250, seed=9)]}]}))
    refused = CliRunner().invoke(app, ["fit", "--from", "eval-report", "--report", str(report), "--version", "t2"])
    assert refused.exit_code == 1
    assert "written to" in refused.stderr and "not installed" in refused.stderr and "missed_blocks" in refused.stderr
    assert not current_path(tmp_path / "state").exists()
    assert (tmp_path / "state" / "calibration" / "versions" / "t2").is_dir()
