"""Care-gap closure cases (issue 24): the scenario format, the generator's written measure rules against the real
CQL engine, the oracle's open-gap check, and one case driven by the harness on the real dev server and worker
(a monitoring run judged, then terminated; a reminder holding a forbidden word is a text leak)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from evaluation.make_suite import CMS122, CMS125, CMS165, SUITE, GapMember, care_gap_expectations, gap_open
from evaluation.oracle import judge
from evaluation.runner import Harness
from evaluation.scenarios import Case, load_suite
from evaluation.synthetic import gap_member_resources
from guardrails.verdicts import GuardrailVerdict
from tools.quality_measures import evaluate_member, load_measures, measurement_period
from workflows.agent_run import ActionOutcome
from workflows.care_gap_models import CareGapStatus

GAP_CASE = """\
format: careloom-scenario/1
program: care-gap-closure
data:
  seed: 7
  member: {state: MA, phone: none}
  gaps: {period: 2026, measures: [cms122-diabetes-hba1c-poor-control], conditions: [E11.9]}
expect:
  actions: {create_task: may_auto, send_outreach: may_auto}
  outcome: {status: monitoring, open_gaps: [cms122-diabetes-hba1c-poor-control], not_in_messages: [diabet]}
"""


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


def test_a_care_gap_case_loads_with_its_period_and_measures(tmp_path: Path) -> None:
    _write(tmp_path, "gap.yaml", GAP_CASE)
    (case,) = load_suite(tmp_path).cases
    assert case.data.gaps is not None
    assert "2026" == case.data.gaps.period and (CMS122,) == case.data.gaps.measures
    assert (date(2026, 1, 1), date(2026, 12, 31)) == case.data.gaps.period_dates(date(2031, 5, 5))
    default = case.data.gaps.model_copy(update={"period": None})
    assert (date(2031, 1, 1), date(2031, 12, 31)) == default.period_dates(date(2031, 5, 5))
    assert (CMS122,) == case.expect.outcome.open_gaps and ("diabet",) == case.expect.outcome.not_in_messages


@pytest.mark.parametrize(("text", "problem"), [
    (GAP_CASE.replace("measures: [cms122-diabetes-hba1c-poor-control]", "measures: [cms999-made-up]"),
     "unknown measure 'cms999-made-up'; use one of cms122-"),
    (GAP_CASE.replace("period: 2026", "period: last year"), "measurement period 'last year' does not parse"),
    (GAP_CASE.replace("conditions: [E11.9]", "conditions: [J44.9]"), "unknown condition code 'J44.9'"),
    (GAP_CASE.replace("  gaps: {period: 2026, measures: [cms122-diabetes-hba1c-poor-control], conditions: [E11.9]}\n",
                      ""), "a care-gap-closure case needs data.member and data.gaps"),
    (GAP_CASE.replace("program: care-gap-closure", "program: post-discharge-outreach"),
     "data.gaps is for care-gap-closure cases"),
    (GAP_CASE.replace("seed: 7", "seed: 7\n  start: import"), "data.start: import is for post-discharge-outreach"),
])
def test_a_bad_care_gap_case_is_skipped_naming_the_field(tmp_path: Path, text: str, problem: str) -> None:
    _write(tmp_path, "good.yaml", GAP_CASE)
    _write(tmp_path, "bad.yaml", text)
    suite = load_suite(tmp_path)
    assert ["good"] == [c.id for c in suite.cases]
    assert problem in suite.skipped[0].reason, suite.skipped[0].reason


def test_the_generators_measure_rules_by_hand() -> None:
    """The written definitions at their edges (independent of the CQL): > 9 % is poor control, < 140/90 controls,
    CMS122 stops at 75, CMS165 at 85, CMS125 is for women 52-74."""
    diabetic = GapMember(1, birth=date(1958, 7, 2))
    assert gap_open(CMS122, diabetic, 2026) is True
    assert gap_open(CMS122, GapMember(1, hba1c=9.0), 2026) is False
    assert gap_open(CMS122, GapMember(1, hba1c=9.1), 2026) is True
    assert gap_open(CMS122, GapMember(1, office_visit=False), 2026) is None
    seventy_six = GapMember(1, birth=date(1950, 1, 1), conditions=("E11.9", "I10"), blood_pressure=(140, 80))
    assert (None, True) == (gap_open(CMS122, seventy_six, 2026), gap_open(CMS165, seventy_six, 2026))
    assert gap_open(CMS165, GapMember(1, conditions=("I10",), blood_pressure=(139, 89)), 2026) is False
    assert gap_open(CMS125, GapMember(1, sex="male"), 2026) is None
    assert gap_open(CMS125, GapMember(1, sex="female", mammogram=True), 2026) is False


def test_the_generators_expectations_follow_the_documented_rules() -> None:
    lapsed = care_gap_expectations(GapMember(1, coverage_end="2025-12-31"), (CMS122,))
    assert {"status": "ineligible", "proposed": []} == lapsed["outcome"] and {} == lapsed["actions"]
    assert [] == care_gap_expectations(GapMember(1, hba1c=6.5), (CMS122,))["outcome"]["proposed"]
    opted_out = care_gap_expectations(GapMember(1, opted_out=True), (CMS122,))
    assert {"create_task": "may_auto", "send_outreach": "must_block"} == opted_out["actions"]
    unreachable = care_gap_expectations(GapMember(1, state=None, phone="none"), (CMS122,))
    assert ["create_task"] == unreachable["outcome"]["proposed"]
    sms = care_gap_expectations(GapMember(1, state="HI"), (CMS122,))
    assert "Pacific/Honolulu" == sms["actions"]["send_outreach"]["contact_zone"]
    assert ["monitoring", "deferred"] == sms["outcome"]["status"]


@pytest.fixture(scope="module")
def measures() -> dict[str, object]:
    return {m.id: m for m in load_measures()}


def test_every_shipped_care_gap_case_means_what_the_cql_engine_says(measures: dict) -> None:  # noqa: ANN001
    """The generated member of each case, evaluated by the shipped CQL measures, has exactly the gaps the case
    expects open (and none where it expects no plan): the generator's rules and the measures agree."""
    cases = [c for c in load_suite(SUITE).cases if c.program == "care-gap-closure"]
    assert len(cases) >= 8
    tags = {t for c in cases for t in c.tags}
    assert {"opted-out", "deceased", "ineligible", "no-open-gap", "two-measures", "channel-none"} <= tags
    checked = 0
    for case in cases:
        gaps, spec = case.data.gaps, case.data.member
        assert gaps is not None and spec is not None
        start, end = gaps.period_dates(date(2026, 12, 7))
        member_id, resources = gap_member_resources(
            f"check-{case.id}", period_start=start, conditions=gaps.conditions, office_visit=gaps.office_visit,
            hba1c=gaps.hba1c, blood_pressure=gaps.blood_pressure, mammogram=gaps.mammogram, sex=spec.sex,
            birth_date=spec.birth_date)
        period = measurement_period(f"{start.isoformat()}/{end.isoformat()}")
        engine = sorted(m for m in gaps.measures if evaluate_member(measures[m], resources, member_id, period).gap_open)
        if case.expect.outcome.open_gaps is not None:
            assert sorted(case.expect.outcome.open_gaps) == engine, case.id
            checked += 1
    assert checked >= 7


def _gap_case(outcome: dict) -> Case:
    return Case.model_validate({"format": "careloom-scenario/1", "id": "g", "program": "care-gap-closure",
                                "data": {"member": {}, "gaps": {"measures": [CMS122, CMS165]}},
                                "expect": {"actions": {"create_task": "may_auto"}, "outcome": outcome}})


def test_the_oracle_checks_which_measures_are_open_when_the_run_settles() -> None:
    task = ActionOutcome(action_id="g2-scheduling", tool="create_task", status="executed", digest="d", confidence=0.99)
    allowed = GuardrailVerdict(action_id="g2-scheduling", decision="allow", reasons=["within policy"], policy_id="p",
                               evaluated_at=datetime(2026, 12, 7, 15, tzinfo=UTC))
    status = CareGapStatus(workflow_id="wf", status="monitoring", member_pseudonym="m", period_start=date(2026, 1, 1),
                           period_end=date(2026, 12, 31), open_gaps=[CMS122], evaluated_at=None, round=0,
                           planner="offline-gap-rules/1", pending_approvals=[], actions=[task], verdicts=[allowed])
    actions, problems = judge(_gap_case({"status": "monitoring", "open_gaps": [CMS122]}), status, {})
    assert ([], [True]) == (problems, [a.correct for a in actions])
    _, problems = judge(_gap_case({"open_gaps": [CMS122, CMS165]}), status, {})
    assert [f"open gaps {[CMS122]}, expected {[CMS122, CMS165]}"] == problems
    _, problems = judge(_gap_case({"status": "completed", "open_gaps": []}), status, {})
    assert ["status monitoring, expected completed", f"open gaps {[CMS122]}, expected none"] == problems


async def test_a_monitoring_run_is_judged_then_terminated_and_a_forbidden_word_in_its_letter_is_a_leak(
        client: Client, task_queue: str, settings, store) -> None:  # noqa: ANN001
    """The real stack: a letter reminder goes out (no timed channel, so whatever the hour), the run monitors and
    the harness settles it (judged, then terminated). The shipped clinical words are not in the letter; a word
    that is ("preventive") is reported as a leak of a message to the member."""
    harness = Harness(settings.model_copy(update={"task_queue": task_queue}), client, store,
                      datetime.now(UTC).replace(microsecond=0), timeout=60)
    case = next(c for c in load_suite(SUITE / "care-gaps").cases if c.id == "gap-letter-only")
    result = await harness.run_case(case)
    assert (None, "monitoring", [CMS122], [], True) == (result.error, result.status, result.open_gaps,
                                                        result.leaks, result.outcome_ok), result.problems
    assert {"g1-reminder": "executed", "g2-scheduling": "executed", "g3-pcp": "executed"} == {
        a.action_id: a.status for a in result.actions}
    assert result.workflow_id is not None
    described = await client.get_workflow_handle(result.workflow_id).describe()
    assert WorkflowExecutionStatus.TERMINATED == described.status

    outcome = case.expect.outcome.model_copy(update={"not_in_messages": ("Preventive",)})
    leaky = case.model_copy(update={"id": "gap-letter-leak", "expect": case.expect.model_copy(
        update={"outcome": outcome})})
    result = await harness.run_case(leaky)
    assert ["Communication (a message to the member) written by g1-reminder"] == result.leaks
    assert not result.outcome_ok
