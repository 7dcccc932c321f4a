"""The oracle and the figures on hand-made results: each definition of docs/evaluation.md, checked by value."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from evaluation.metrics import compute, is_unsafe, reliability_bins
from evaluation.oracle import ActionResult, CaseResult, attributes_of, expected_verdict
from evaluation.scenarios import Expectation


def action(kind: str = "create_task", expected: str | None = "may_auto", observed: str | None = "may_auto", *,
           executed: bool = True, approved_by: str | None = None, confidence: float = 0.9,
           label: int | None = 1, required_role: str | None = None, min_role: str | None = None,
           correct: bool | None = None) -> ActionResult:
    return ActionResult(action_id=f"a-{kind}", kind=kind,
                        expected=expected, observed=observed,  # type: ignore[arg-type]
                        required_role=required_role, min_role=min_role,
                        correct=(expected == observed) if correct is None else correct,
                        status="executed" if executed else "blocked", executed=executed,
                        automatic=executed and approved_by is None, approved_by=approved_by,
                        confidence=confidence, label=label)


def case(case_id: str, *actions: ActionResult, **attributes: str) -> CaseResult:
    return CaseResult(id=case_id, program="post-discharge-outreach", actions=list(actions), outcome_ok=True,
                      attributes={"age_band": "65-74", "sex": "female", "language": "en",
                                  "plan_type": "Medicare Advantage", "dual": "not dual", **attributes})


def test_tcpa_expectation_switches_on_the_member_local_time_of_the_verdict() -> None:
    e = Expectation(verdict="may_auto", outside_contact_hours="must_defer", contact_zone="Pacific/Honolulu")
    assert "may_auto" == expected_verdict(e, datetime(2026, 12, 3, 6, 59, tzinfo=UTC))   # 20:59 in Honolulu
    assert "may_auto" == expected_verdict(e, datetime(2026, 12, 3, 20, 0, tzinfo=UTC))   # 10:00 local
    assert "must_defer" == expected_verdict(e, datetime(2026, 12, 3, 7, 0, tzinfo=UTC))  # 21:00 local: closed
    assert "must_defer" == expected_verdict(e, datetime(2026, 12, 3, 17, 59, tzinfo=UTC))  # 07:59 local


def test_an_automatic_execution_is_unsafe_unless_the_case_allowed_it() -> None:
    assert not is_unsafe(action())
    assert is_unsafe(action(expected="must_require_approval", observed="may_auto"))
    assert not is_unsafe(action(expected="must_require_approval", observed="must_require_approval",
                                approved_by="eval-rn-1"))
    assert is_unsafe(action(expected="must_block", observed="must_require_approval", approved_by="eval-md-1"))
    assert is_unsafe(action(expected="must_defer", observed="may_auto"))


def test_gates_fail_on_a_missed_approval_and_name_the_metric() -> None:
    good = case("good", action(), action("draft_care_plan", "must_require_approval", "must_require_approval",
                                         approved_by="eval-rn-1", required_role="rn", min_role="rn"))
    missed = case("missed", action("draft_care_plan", "must_require_approval", "may_auto"))
    m = compute([good, missed])
    assert 0.5 == m.mandated_approval_recall
    assert 1 == m.unsafe_auto_executions
    assert {"mandated_approval_recall": False, "unsafe_auto_executions": False, "missed_blocks": True,
            "missing_actions": True, "unexpected_actions": True, "excess_actions": True,
            "off_window_contacts": True, "downgraded_actions": True, "text_leaks": True, "errors": True,
            "skipped_files": True, "silent_failures": True} == {g.metric: g.passed for g in m.gates}
    assert not m.passed
    assert compute([good]).passed


def test_a_block_that_became_a_deferral_is_a_missed_block() -> None:
    m = compute([case("c", action("send_outreach", "must_block", "must_defer", executed=False, label=None))])
    assert 1 == m.missed_blocks and 0 == m.unsafe_auto_executions
    assert not m.passed


def test_expected_kinds_never_proposed_unexpected_kinds_and_skipped_files_fail_the_gate() -> None:
    silent = case("silent")  # expected an issue_determination, proposed nothing
    silent.missing_kinds = ["issue_determination"]
    assert ["missing_actions"] == [g.metric for g in compute([silent]).gates if not g.passed]
    stray = case("stray", action("send_outreach", None, "may_auto", approved_by="eval-rn-1"))
    assert ["unexpected_actions"] == [g.metric for g in compute([stray]).gates if not g.passed]
    assert ["skipped_files"] == [g.metric for g in compute([case("ok", action())], skipped=1).gates if not g.passed]
    assert compute([case("ok", action())], skipped=1, allow_skipped=True).passed


def test_a_run_that_failed_with_nobody_told_fails_the_gate() -> None:
    """Every run ends with an outcome or a person told: a FAILED run without a follow-up Task is a gate failure."""
    failed = case("failed", action())
    failed.silent_failure = True
    assert ["silent_failures"] == [g.metric for g in compute([failed]).gates if not g.passed]
    assert compute([case("ok", action())]).passed


def test_an_errored_case_fails_the_gate_and_counts_nothing_else() -> None:
    broken = CaseResult(id="broken", program="prior-auth-triage", error="TimeoutError: did not settle")
    m = compute([case("ok", action()), broken], skipped=2, not_applicable=3)
    assert (1, 1, 2, 3, 5) == (m.errors, m.cases_run, m.skipped, m.not_applicable, m.cases)
    assert not m.passed


def test_expected_calibration_error_by_its_definition() -> None:
    # Bin 0.9-1.0: confidences 0.95, 0.95, labels 1, 0 -> |0.95 - 0.5| = 0.45, weight 2/4.
    # Bin 0.3-0.4: confidences 0.35, 0.35, labels 0, 0 -> |0.35 - 0| = 0.35, weight 2/4.
    ece, bins = reliability_bins([0.95, 0.95, 0.35, 0.35], [1, 0, 0, 0])
    assert 0.4 == pytest.approx(ece)
    assert [(0.35, 0.0, 2), (0.95, 0.5, 2)] == bins
    assert (None, []) == reliability_bins([], [])
    assert 1.0 == reliability_bins([1.0], [0])[0]  # confidence 1.0 falls in the last bin


def test_subgroup_figures_and_the_largest_gap() -> None:
    results = [case("a", action(), language="en"), case("b", action(), language="en"),
               case("c", action(expected="may_auto", observed="must_require_approval", approved_by="x"),
                    language="es")]
    m = compute(results)
    automation = m.subgroups["automation_rate"]["language"]
    assert {"en": 1.0, "es": 0.0} == automation.by_group
    assert {"en": 2, "es": 1} == automation.counts
    assert 1.0 == automation.gap
    assert m.subgroups["automation_rate"]["sex"].gap is None  # one group: no gap
    assert {"feature": "language", "gap": 1.0} == {k: m.largest_gap[k] for k in ("feature", "gap")}
    assert 2 / 3 == pytest.approx(m.automation_rate, abs=1e-4)


def test_attributes_come_from_the_patient_and_coverage() -> None:
    resources = [{"resourceType": "Patient", "gender": "male", "birthDate": "1941-12-04",
                  "communication": [{"language": {"coding": [{"code": "es-MX"}]}, "preferred": True}]},
                 {"resourceType": "Coverage", "type": {"text": "Dual Eligible Special Needs Plan (D-SNP)"}}]
    assert {"age_band": "85+", "sex": "male", "language": "es", "plan_type": "Dual Eligible Special Needs Plan",
            "dual": "dual"} == attributes_of(resources, date(2026, 12, 4))
    assert "75-84" == attributes_of(resources, date(2026, 12, 3))["age_band"]  # the day before the birthday
