"""The scenario format's loader: good cases load, each bad one is skipped naming its file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.scenarios import load_suite

GOOD = """\
format: careloom-scenario/1
program: post-discharge-outreach
data:
  seed: 3
  member: {state: AK, stay: {los_days: 7, codes: [I50.9], ed_visits: 1}}
review: {draft_care_plan: edit}
expect:
  actions:
    create_task: may_auto
    draft_care_plan: {verdict: must_require_approval, min_role: rn}
    send_outreach: {verdict: may_auto, outside_contact_hours: must_defer, contact_zone: America/Anchorage}
  outcome: {status: completed, lace: 10}
"""


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


def test_a_good_case_loads_with_its_shorthand_expanded(tmp_path: Path) -> None:
    write(tmp_path, "high-lace-ak.yaml", GOOD)
    suite = load_suite(tmp_path)
    assert [] == suite.skipped
    (case,) = suite.cases
    assert "high-lace-ak" == case.id
    assert "may_auto" == case.expect.actions["create_task"].verdict
    assert "rn" == case.expect.actions["draft_care_plan"].min_role
    assert ("completed",) == case.expect.outcome.status
    assert "edit" == case.review["draft_care_plan"]


@pytest.mark.parametrize(("text", "problem"), [
    (GOOD.replace("seed: 3", "seed: 3\n  colour: blue"), "data.colour: unknown field"),
    (GOOD.replace("create_task: may_auto", "create_tsk: may_auto"), "unknown action kind 'create_tsk'"),
    (GOOD.replace("review: {draft_care_plan: edit}", "review: {send_sms: approve}"),
     "unknown action kind 'send_sms'"),
    (GOOD.replace("min_role: rn", "min_role: dr"), "expect.actions.draft_care_plan.min_role"),
    (GOOD.replace("verdict: must_require_approval, min_role: rn", "verdict: must_require_approval"),
     "must_require_approval needs min_role"),
    (GOOD.replace("America/Anchorage", "Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
    (GOOD.replace("  member: {state: AK, stay: {los_days: 7, codes: [I50.9], ed_visits: 1}}",
                  "  files: [data/missing.json]"), "data.files: data/missing.json does not exist"),
    ("format: careloom-scenario/1\nprogram: [unclosed", "not valid YAML"),
])
def test_a_bad_case_is_skipped_naming_file_and_field_and_the_others_still_load(
        tmp_path: Path, text: str, problem: str) -> None:
    write(tmp_path, "good.yaml", GOOD)
    write(tmp_path, "bad.yaml", text)
    suite = load_suite(tmp_path)
    assert ["good"] == [c.id for c in suite.cases]
    (skipped,) = suite.skipped
    assert "bad.yaml" == skipped.file
    assert problem in skipped.reason


def test_two_cases_with_one_id_keep_the_first(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD.replace("format:", "id: same\nformat:"))
    write(tmp_path, "b.yaml", GOOD.replace("format:", "id: same\nformat:"))
    suite = load_suite(tmp_path)
    assert ["same"] == [c.id for c in suite.cases]
    assert "also the id of a.yaml" in suite.skipped[0].reason


def test_a_missing_suite_folder_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--suite"):
        load_suite(tmp_path / "nowhere")
