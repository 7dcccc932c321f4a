"""Issue 25: cases whose trigger is an HL7 ADT message or a Synthea-style Bundle, and automation per trigger."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from evaluation.make_suite import SUITE
from evaluation.metrics import compute
from evaluation.oracle import ActionResult, CaseResult
from evaluation.scenarios import Case, load_suite, trigger_of
from evaluation.synthetic import adt_discharge_message, member_resources, synthea_bundle
from feeds.adt import apply_event, parse_adt
from store.fhir_validation import validate_resource
from store.importer import import_path
from store.sql_records import SqlCareRecordStore


def _case(start: str, program: str = "post-discharge-outreach", **stay: Any) -> Case:  # noqa: ANN401
    return Case.model_validate({
        "format": "careloom-scenario/1", "id": "c", "program": program,
        "data": {"start": start, "member": {"stay": stay}, **({"request": {}} if program == "prior-auth-triage"
                                                             else {})},
        "expect": {}})


def test_the_trigger_of_a_case() -> None:
    assert ["outreach-start", "import", "adt", "bundle"] == [trigger_of(_case(s)) for s in
                                                             ("explicit", "import", "adt", "bundle")]
    assert "prior-auth" == trigger_of(_case("explicit", "prior-auth-triage"))


@pytest.mark.parametrize(("start", "program", "stay", "problem"), [
    ("adt", "post-discharge-outreach", {"discharged": None}, "needs data.member with a discharge"),
    ("bundle", "post-discharge-outreach", {"discharged": None}, "needs data.member with a discharge"),
    ("adt", "post-discharge-outreach", {"priority": "S"}, "has no PV1-4 admission type"),
    ("adt", "prior-auth-triage", {}, "is for post-discharge-outreach cases"),
])
def test_adt_and_bundle_cases_are_checked(start: str, program: str, stay: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        _case(start, program, **stay)


def _stay(priority: str | None) -> tuple[str, str, list[dict[str, Any]], dict[str, Any]]:
    member_id, encounter_id, resources = member_resources(
        "trig", codes=("I50.9",), ed_visits=1, priority=priority, admit_source=None if priority is None else "emd")
    return member_id, encounter_id, resources, next(r for r in resources if r["id"] == encounter_id)


@pytest.mark.parametrize(("priority", "pv1_4", "mapped"), [("UR", "U", "UR"), ("EM", "E", "EM"), ("EL", "C", "EL"),
                                                           ("R", "R", "R"), (None, "", None)])
def test_the_adt_message_of_a_stay_maps_back_to_it(priority: str | None, pv1_4: str, mapped: str | None) -> None:
    member_id, encounter_id, _, stay = _stay(priority)
    text = adt_discharge_message(stay, control_id="ctl1", sent_at=datetime.now(UTC))
    assert pv1_4 == text.split("\r")[3].split("|")[4]
    _, event = parse_adt(text, time_zone="America/New_York")
    assert event is not None and (member_id, encounter_id, "A03") == (event.member_id, event.encounter_id,
                                                                     event.event)
    encounter = apply_event(event, None)
    validate_resource(encounter)
    assert stay["period"] == encounter["period"]
    assert mapped == next((c["code"] for c in (encounter.get("priority") or {}).get("coding", [])), None)


def test_the_synthea_style_bundle_imports_as_the_records_it_was_made_from(store: SqlCareRecordStore,
                                                                        tmp_path: Path) -> None:
    _, encounter_id, resources, stay = _stay("UR")
    bundle = synthea_bundle(resources, "trig")
    assert "transaction" == bundle["type"]
    assert all(e["fullUrl"].startswith("urn:uuid:") and e["request"]["method"] == "POST" for e in bundle["entry"])
    assert stay["subject"]["reference"] not in json.dumps(bundle)  # references are urn:uuids, as Synthea writes
    path = tmp_path / "member.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    report = import_path(store, path)
    assert 0 == report.skipped
    assert encounter_id in report.encounters
    for resource in resources:
        assert resource == {k: v for k, v in store.get(resource["resourceType"], resource["id"]).items()
                            if k != "meta"}


def _result(trigger: str, automatic: list[bool]) -> CaseResult:
    return CaseResult(id=f"{trigger}-{len(automatic)}", program="post-discharge-outreach", trigger=trigger,
                      outcome_ok=True, actions=[ActionResult(
                          action_id=str(n), kind="create_task", expected="may_auto",
                          observed="may_auto" if auto else "must_require_approval", correct=auto,
                          status="executed" if auto else "awaiting_approval", executed=auto, automatic=auto,
                          confidence=0.9) for n, auto in enumerate(automatic)])


def test_automation_is_reported_per_trigger_next_to_the_overall_figure() -> None:
    metrics = compute([_result("outreach-start", [True, True]), _result("adt", [False, True, False, False]),
                       _result("bundle", [])])
    assert 0.5 == metrics.automation_rate
    assert {"adt": 0.25, "bundle": None, "outreach-start": 1.0} == metrics.automation_by_trigger
    assert {"adt": 4, "bundle": 0, "outreach-start": 2} == metrics.may_auto_by_trigger
    assert {"adt": 1, "bundle": 1, "outreach-start": 1} == metrics.cases_by_trigger
    assert "automation_by_trigger" in metrics.model_dump_json()


def test_the_shipped_suite_measures_the_production_triggers() -> None:
    suite = load_suite(SUITE)
    triggers: dict[str, list[Case]] = {}
    for case in suite.cases:
        triggers.setdefault(trigger_of(case), []).append(case)
    for trigger, least in (("adt", 10), ("bundle", 6)):
        cases = triggers[trigger]
        assert len(cases) >= least, trigger
        may_auto = [e for c in cases for e in c.expect.actions.values() if e.verdict == "may_auto"]
        assert len(may_auto) >= 8, trigger  # the automation rate of the trigger is measured, not empty
        # The bad input stays in the suite: no acuity recorded, LACE unscored, people decide.
        unscored = [c for c in cases if c.data.member and c.data.member.stay.priority is None]
        assert unscored and all(c.expect.outcome.lace is None and "may_auto" not in
                                {e.verdict for e in c.expect.actions.values()} for c in unscored), trigger
    assert {"C", "R"} & {adt_code for c in triggers["adt"] if c.data.member
                         for adt_code in [{"EL": "C", "R": "R"}.get(c.data.member.stay.priority or "")]}
