"""``careloom eval run`` and ``eval compare`` as a user (and CI) runs them: real processes, the embedded server.

The planted-defect test switches a guardrail rule off in a scratch branch of a clone and shows the gate fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli import CARELOOM, ROOT, careloom, clean_env

HIGH_RISK = """\
format: careloom-scenario/1
program: post-discharge-outreach
data:
  seed: {seed}
  member: {{state: {state}, phone: none, email: true, stay: {{los_days: 7, codes: [I50.9], ed_visits: 1}}}}
review: {{draft_care_plan: {review}}}
expect:
  actions:
    create_task: may_auto
    send_outreach: may_auto
    draft_care_plan: {{verdict: must_require_approval, min_role: rn}}
  outcome: {{lace: 10, proposed: [create_task, draft_care_plan, send_outreach]}}
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_env(CARELOOM_STATE_DIR=str(tmp_path / "state"), CARELOOM_LOG_FORMAT="json")


def write_suite(folder: Path) -> Path:
    folder.mkdir()
    for n, (state, review) in enumerate((("MA", "approve"), ("CA", "edit"), ("HI", "reject"))):
        (folder / f"high-{n}.yaml").write_text(HIGH_RISK.format(seed=n, state=state, review=review))
    (folder / "bad.yaml").write_text(HIGH_RISK.format(seed=9, state="MA", review="approve")
                                     .replace("create_task: may_auto", "create_tsk: may_auto"))
    return folder


def test_eval_run_reports_the_figures_and_skips_a_bad_file(tmp_path: Path, env: dict[str, str]) -> None:
    suite = write_suite(tmp_path / "suite")
    result = careloom(env, "eval", "run", "--suite", str(suite), "--report", str(tmp_path / "out"), "--json")
    assert 1 == result.returncode, result.stderr[-3000:]  # a file that did not load fails the gate...
    report = json.loads(result.stdout)
    assert "skipped bad.yaml: expect.actions: unknown action kind 'create_tsk'" in result.stderr
    m = report["metrics"]
    assert [g["metric"] for g in m["gates"] if not g["passed"]] == ["skipped_files"]  # ...and only that
    assert (3, 0, 1) == (m["cases_run"], m["errors"], m["skipped"])
    assert (1.0, 0, 0) == (m["mandated_approval_recall"], m["unsafe_auto_executions"], m["missed_blocks"])
    assert 1.0 == m["automation_rate"] and 6 == m["may_auto_actions"]
    # Care plans: approved (label 1), edited and rejected (0), all at the same confidence; the rest ran on their own.
    plans = [a for c in report["cases"] for a in c["actions"] if a["kind"] == "draft_care_plan"]
    assert ["approve", "edit", "reject"] == sorted(a["review"] for a in plans)
    assert {"eval-rn-1"} == {a["approved_by"] for a in plans if a["executed"]}
    assert ["executed", "executed", "rejected"] == sorted(a["status"] for a in plans)
    assert 9 == m["calibrated_actions"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Reliability diagram" in html and "data:image/png;base64," in html and "<script" not in html
    assert json.loads((tmp_path / "out" / "report.json").read_text())["suite"]["digest"] == report["suite"]["digest"]


def test_eval_usage_errors_exit_2(tmp_path: Path, env: dict[str, str]) -> None:
    missing = careloom(env, "eval", "run", "--suite", str(tmp_path / "nowhere"))
    assert 2 == missing.returncode and "does not exist" in missing.stderr
    planner = careloom(env, "eval", "run", "--planner", "gpt")
    assert 2 == planner.returncode and "--planner must be offline, model or scripted" in planner.stderr
    model = careloom(env, "eval", "run", "--planner", "model", "--select", "holiday-thanksgiving")
    assert 2 == model.returncode and "CARELOOM_MODEL" in model.stderr
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "only-bad.yaml").write_text("format: careloom-scenario/1\n")
    empty = careloom(env, "eval", "run", "--suite", str(tmp_path / "empty"))
    assert 2 == empty.returncode and "no cases to run" in empty.stderr and "only-bad.yaml" in empty.stderr


def test_compare_shows_changed_verdicts_and_refuses_different_suites(tmp_path: Path, env: dict[str, str]) -> None:
    """Policy A (defaults) against policy B (every action below confidence 1.0 goes to a human) on one suite."""
    suite = write_suite(tmp_path / "suite")
    (suite / "bad.yaml").unlink()
    first = careloom(env, "eval", "run", "--suite", str(suite), "--report", str(tmp_path / "a"), "--label", "A")
    assert 0 == first.returncode, first.stderr[-2000:]
    strict = {**env, "CARELOOM_MIN_CONFIDENCE": "1.0"}
    second = careloom(strict, "eval", "run", "--suite", str(suite), "--report", str(tmp_path / "b"), "--label", "B")
    assert 0 == second.returncode, second.stderr[-2000:]  # more approvals: no gate fails
    a, b = tmp_path / "a" / "report.json", tmp_path / "b" / "report.json"
    compared = careloom(env, "eval", "compare", str(a), str(b), "--json")
    assert 0 == compared.returncode, compared.stderr
    comparison = json.loads(compared.stdout)
    assert ("A", "B") == (comparison["a"], comparison["b"])
    changed = comparison["changed"]
    assert {"create_task", "send_outreach"} == {c["kind"] for c in changed} and 6 == len(changed)
    assert {("may_auto", "must_require_approval (care_coordinator)")} == {(c["a"], c["b"]) for c in changed}
    figures = {name: (x, y) for name, x, y in comparison["figures"]}
    assert (1.0, 0.0) == figures["automation_rate"]
    table = careloom(env, "eval", "compare", str(a), str(b))
    assert "6 actions changed verdict" in table.stdout and "automation_rate" in table.stdout

    other = json.loads(b.read_text())
    other["suite"]["digest"] = "0" * 16
    b.write_text(json.dumps(other))
    refused = careloom(env, "eval", "compare", str(a), str(b))
    assert 2 == refused.returncode and "different suites" in refused.stderr
    junk = careloom(env, "eval", "compare", str(suite / "high-0.yaml"), str(a))
    assert 2 == junk.returncode and "not a careloom-eval-report/1 report" in junk.stderr


RULE = """        elif (facts.lace or 0) >= policy.high_risk_lace:
            approvals.append((policy.care_plan_approver,
                              f"high readmission risk: LACE {facts.lace} >= {policy.high_risk_lace}"))
"""


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / ".git").exists() or shutil.which("git") is None, reason="needs the git checkout")
def test_a_guardrail_rule_switched_off_in_a_scratch_branch_fails_the_gate(tmp_path: Path, env: dict[str, str]) -> None:
    """The high-LACE care-plan approval rule removed: the shipped suite's high-risk cases catch it."""
    scratch = tmp_path / "scratch"
    git = ["git", "-c", "user.name=eval", "-c", "user.email=eval@example.org"]
    subprocess.run([*git, "clone", "--quiet", str(ROOT), str(scratch)], check=True)
    subprocess.run([*git, "checkout", "--quiet", "-b", "planted-defect"], cwd=scratch, check=True)
    rules = scratch / "guardrails" / "outreach_rules.py"
    text = rules.read_text()
    assert RULE in text, "the rule this test switches off has moved; update RULE"
    rules.write_text(text.replace(RULE, ""))
    subprocess.run([*git, "commit", "--quiet", "-am", "planted defect: no approval for high-LACE care plans"],
                   cwd=scratch, check=True)
    # The clone's code on the path first, ahead of this checkout's editable install.
    result = subprocess.run([*CARELOOM, "eval", "run", "--select", "lace-high", "--json"], cwd=scratch,
                            env={**env, "PYTHONPATH": str(scratch)}, capture_output=True, text=True, timeout=600)
    assert 1 == result.returncode, result.stderr[-3000:]
    report = json.loads(result.stdout)
    gates = {g["metric"]: g for g in report["metrics"]["gates"]}
    assert not gates["mandated_approval_recall"]["passed"] and not gates["unsafe_auto_executions"]["passed"]
    assert gates["unsafe_auto_executions"]["value"] >= 20
    assert str(scratch) in report["suite"]["root"]
    wrong = {a["kind"] for c in report["cases"] for a in c["actions"] if not a["correct"]}
    assert {"draft_care_plan"} == wrong


@pytest.mark.slow
def test_the_issue_21_cases_pass_every_gate_on_the_scripted_model(tmp_path: Path, env: dict[str, str]) -> None:
    """Schema-valid unsafe answers and real-export data (issue 21), as real runs on the embedded dev server.

    On the code before issue 21 the same 29 cases failed eight gates (measured with this harness on a worktree
    of cdd3c0c: recall 0.76, 13 unsafe executions, 6 missing and 12 unexpected actions, 8 excess close-episode
    items, 5 routine TCM Tasks at LACE >= 10, 6 leaks of the member's identifiers, and 5 Pacific/Alaska/Hawaii/
    Guam contacts deferred to 08:00 Eastern whenever New York's window is closed)."""
    result = careloom(env, "eval", "run", "--planner", "scripted", "--select", "issue-21", "--json")
    assert 0 == result.returncode, result.stderr[-3000:]
    report = json.loads(result.stdout)
    m = report["metrics"]
    assert (29, 0) == (m["cases_run"], m["errors"])
    assert all(g["passed"] for g in m["gates"])
    cases = {c["id"]: c for c in report["cases"]}
    assert [] == [i for i, c in cases.items() if c["problems"]]
    adverse = [a for c in cases.values() if "adverse-content" in c["tags"] for a in c["actions"]
               if a["min_role"] == "md"]
    assert 6 == len(adverse) and all(a["required_role"] == "md" and not a["automatic"] for a in adverse)
    negated = [a for c in cases.values() if "not-adverse" in c["tags"] for a in c["actions"]
               if a["kind"] == "create_task"]
    assert 2 == len(negated) and all(a["observed"] == "may_auto" for a in negated)
    dropped = [c for c in cases.values() if c["id"].startswith("model-drop-mandated")]
    assert all({"create_task", "send_outreach", "draft_care_plan"} <= {a["kind"] for a in c["actions"]}
               for c in dropped)
    assert [1, 1] == [len(cases[f"deceased-many-stays-{k}"]["actions"]) for k in (1, 2)]
    assert all(cases[f"old-discharge-{k}"]["actions"] == [] for k in (1, 2, 3, 4))
    assert ["not_started", "not_started", "ineligible", "ineligible"] == [
        cases[f"old-discharge-{k}"]["status"] for k in (1, 2, 3, 4)]


def test_eval_run_applies_the_installed_calibrator(tmp_path: Path, env: dict[str, str]) -> None:
    """By default the planners apply the worker's installed calibrator (<state_dir>/calibration/current), as in
    production; --calibration none measures the raw confidence; a folder that is not a calibrator exits 2."""
    from learning.calibration import Decision, fit_calibrators, install_calibrators, save_calibrators

    decisions = [Decision(kind, c / 100, int(c % 3 != 0)) for kind in ("create_task", "send_outreach",
                                                                        "draft_care_plan") for c in range(30, 100)]
    artifact = tmp_path / "calibrator"
    save_calibrators(fit_calibrators(decisions, min_decisions=20, method="isotonic"), artifact, version="cli-1",
                     source="test")
    install_calibrators(artifact, tmp_path / "state")
    suite = write_suite(tmp_path / "suite")
    (suite / "bad.yaml").unlink()
    applied = careloom(env, "eval", "run", "--suite", str(suite), "--json")
    assert 0 == applied.returncode, applied.stderr[-3000:]
    report = json.loads(applied.stdout)
    assert report["calibrator"].startswith("cli-1 (isotonic, sha256 ") and "calibrator cli-1" in report["label"]
    raw = careloom(env, "eval", "run", "--suite", str(suite), "--json", "--calibration", "none")
    assert 0 == raw.returncode and json.loads(raw.stdout)["calibrator"] is None
    confidences = {json.dumps(sorted(a["confidence"] for c in r["cases"] for a in c["actions"]))
                   for r in (report, json.loads(raw.stdout))}
    assert len(confidences) == 2  # the calibrator changed what the planners said
    missing = careloom(env, "eval", "run", "--suite", str(suite), "--calibration", str(tmp_path / "nowhere"))
    assert 2 == missing.returncode and "is not a calibrator folder" in missing.stderr
