"""Care-gap closure end to end on the real dev server, worker and records store: a diabetic with no HbA1c this
year has an open gap; the run reminds the member (a PHI-free SMS), gives a care coordinator a scheduling Task and
the PCP's office a notification Task, then monitors; a new HbA1c is imported, a `recheck` arrives, the gap closes
and the run ends closed after outreach. A member with no open gap gets no plan; a member whose coverage ended gets
nothing; the same member and period never get a second run."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time

from guardrails.policy import GuardrailPolicy
from tests.fhir_factory import make_member
from tools.gap_closures import closed_after_outreach
from workflows.care_gap import CareGapWorkflow
from workflows.care_gap_client import start_care_gap
from workflows.care_gap_models import CareGapResult, CareGapStatus

CMS122 = "cms122-diabetes-hba1c-poor-control"
OPEN = GuardrailPolicy(contact_window_start=time(0), contact_window_end=time.max)
LOINC, CPT, ICD10 = "http://loinc.org", "http://www.ama-assn.org/go/cpt", "http://hl7.org/fhir/sid/icd-10-cm"


def _diabetic(store, *, coverage_end: str = "2099-12-31"):  # noqa: ANN001, ANN202
    member = make_member(store, birth_date=date(1960, 3, 1), coverage_end=coverage_end)
    mid = member.member_id
    store.put_many([
        {"resourceType": "Condition", "id": f"dm-{mid}", "subject": {"reference": f"Patient/{mid}"},
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                        "code": "active"}]},
         "code": {"coding": [{"system": ICD10, "code": "E11.9"}]}, "onsetDateTime": "2019-06-01"},
        {"resourceType": "Encounter", "id": f"visit-{mid}", "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "type": [{"coding": [{"system": CPT, "code": "99213"}]}], "subject": {"reference": f"Patient/{mid}"},
         "period": {"start": "2026-03-02T09:00:00Z", "end": "2026-03-02T09:30:00Z"}}])
    return member


def _hba1c(mid: str, value: float) -> dict:
    return {"resourceType": "Observation", "id": f"a1c-{mid}", "status": "final", "subject": {"reference": f"Patient/{mid}"},
            "code": {"coding": [{"system": LOINC, "code": "4548-4"}]}, "effectiveDateTime": "2026-12-01T10:00:00Z",
            "valueQuantity": {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}


async def _start(client, task_queue, settings, member_id: str, **options):  # noqa: ANN001, ANN202
    return await start_care_gap(client, member_id=member_id, period_start=date(2026, 1, 1),
                                period_end=date(2026, 12, 31), measure_ids=[CMS122], policy=OPEN,
                                task_queue=task_queue, salt=settings.pseudonym_salt.get_secret_value(),
                                initiated_by="gap-campaign", tool_attempts=1, **options)


async def _status(handle, word: str, timeout: float = 30.0) -> CareGapStatus:  # noqa: ANN001
    for _ in range(int(timeout / 0.1)):
        status = await handle.query(CareGapWorkflow.status)
        if status.status == word:
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{handle.id} is {status.status}, not {word}")


async def test_an_open_gap_is_worked_and_closes_when_new_data_arrive(client, task_queue, settings, store) -> None:
    member = _diabetic(store)
    handle, started = await _start(client, task_queue, settings, member.member_id)
    assert started
    try:
        monitoring = await _status(handle, "monitoring")
        assert [CMS122] == monitoring.open_gaps
        done = {a.action_id: (a.tool, a.status) for a in monitoring.actions}
        assert {"g1-reminder": ("send_outreach", "executed"), "g2-scheduling": ("create_task", "executed"),
                "g3-pcp": ("create_task", "executed")} == done
        [sms] = [c for c in store.find_for_member("Communication", member.member_id)
                 if c["category"][0]["text"] == "care-gap closure"]
        text = sms["payload"][0]["contentString"].lower()
        assert "encounter" not in sms and not any(w in text for w in ("diabet", "a1c", "glucose"))
        tasks = {t["code"]["coding"][0]["code"]: t for t in store.find_for_member("Task", member.member_id)}
        assert {"gap-closure-scheduling", "pcp-gap-notification"} <= set(tasks)
        assert f"Measure/{CMS122}" == tasks["gap-closure-scheduling"]["focus"]["reference"]

        # The same member and period: joined, never a second run.
        again, started_again = await _start(client, task_queue, settings, member.member_id)
        assert (handle.id, False) == (again.id, started_again)

        store.put_many([_hba1c(member.member_id, 7.1)])  # a lab result arrives: controlled
        await handle.signal(CareGapWorkflow.recheck)
        result: CareGapResult = await asyncio.wait_for(handle.result(), timeout=30)
    finally:
        if (await handle.describe()).status.name == "RUNNING":
            await handle.terminate("test finished")
    assert ("completed", "gaps-closed") == (result.status, result.ended_by)
    assert ([CMS122], [CMS122], [], [CMS122]) == (result.opened, result.closed, result.still_open,
                                                 result.closed_after_outreach)
    assert 1 == result.rechecks
    # The worker recorded the closure, checked again, with the run's own outreach as its evidence: what
    # `careloom gaps report` counts as closed after careloom's outreach.
    [issue] = store.find_for_member("DetectedIssue", member.member_id)
    assert {f"Communication/{sms['id']}", f"Task/{tasks['gap-closure-scheduling']['id']}",
            f"Task/{tasks['pcp-gap-notification']['id']}"} == {d["reference"] for d in issue["evidence"][0]["detail"]}
    assert closed_after_outreach(store, member.member_id, CMS122, date(2026, 1, 1), date(2026, 12, 31))


async def test_no_open_gap_no_plan_and_ineligible_nothing(client, task_queue, settings, store) -> None:
    """A controlled diabetic: no plan, the run completes at once; coverage ended: nothing is planned."""
    controlled = _diabetic(store)
    store.put_many([_hba1c(controlled.member_id, 6.8)])
    handle, _ = await _start(client, task_queue, settings, controlled.member_id)
    result: CareGapResult = await asyncio.wait_for(handle.result(), timeout=30)
    assert ("completed", "no-open-gap", [], []) == (result.status, result.ended_by, result.opened, result.actions)

    lapsed = _diabetic(store, coverage_end="2025-12-31")
    handle, _ = await _start(client, task_queue, settings, lapsed.member_id)
    result = await asyncio.wait_for(handle.result(), timeout=30)
    assert ("ineligible", "ineligible", []) == (result.status, result.ended_by, result.actions)
    assert [] == [c for c in store.find_for_member("Communication", lapsed.member_id)]
