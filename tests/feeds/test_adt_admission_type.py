"""Issue 25: PV1-4 admission type → Encounter.priority, so LACE's "A" is scored for discharges from the ADT feed.

A message without PV1-4 (or with a code that says nothing about acuity) leaves the admission's acuity unrecorded:
LACE is not scored and the run says so, as before.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from hl7.mllp import open_hl7_connection
from temporalio.client import Client

from feeds.adt import AdtEvent, apply_event, parse_adt
from runtime.settings import Settings
from store.fhir_validation import validate_resource
from store.sql_records import SqlCareRecordStore
from tests.conftest import wait_for_status
from tests.feeds.hl7_messages import adt, frame
from tests.feeds.listeners import running_listener
from tests.fhir_factory import make_member
from tools.clinical import ClinicalContextInput, get_clinical_context
from tools.risk import RiskInput, score_readmission_risk
from workflows.outreach_client import outreach_workflow_id

ZONE = "America/New_York"


def with_admission_type(message: str, admission_type: str) -> str:
    """``message`` with PV1-4 set (the test messages leave it empty)."""
    segments = message.split("\r")
    for index, segment in enumerate(segments):
        if segment.startswith("PV1|"):
            fields = segment.split("|")
            fields[4] = admission_type
            segments[index] = "|".join(fields)
    return "\r".join(segments)


def _event(admission_type: str, event: str = "A03") -> AdtEvent:
    message = with_admission_type(adt(event, "pt-1", "visit-1"), admission_type)
    _, parsed = parse_adt(message, time_zone=ZONE)
    assert parsed is not None
    return parsed


def _priority(encounter: dict) -> str | None:
    return next((c["code"] for c in (encounter.get("priority") or {}).get("coding") or []), None)


@pytest.mark.parametrize(("admission_type", "priority"), [
    ("E", "EM"), ("A", "EM"), ("U", "UR"), ("u", "UR"), ("C", "EL"), ("R", "R"),
    ("", None), ("L", None), ("N", None), ("Z9", None),
])
def test_pv1_4_maps_to_the_encounter_priority(admission_type: str, priority: str | None) -> None:
    event = _event(admission_type)
    assert priority == event.priority
    encounter = apply_event(event, None)
    validate_resource(encounter)
    assert priority == _priority(encounter)
    if priority:
        assert "http://terminology.hl7.org/CodeSystem/v3-ActPriority" == encounter["priority"]["coding"][0]["system"]
    else:
        assert "priority" not in encounter


def test_an_a03_without_pv1_4_keeps_the_priority_the_admission_carried_and_a_new_one_replaces_it() -> None:
    admitted = apply_event(_event("U", "A01"), None)
    assert "UR" == _priority(admitted)
    discharged = apply_event(_event(""), admitted)
    assert ("finished", "UR") == (discharged["status"], _priority(discharged))
    corrected = apply_event(_event("C", "A08"), discharged)
    assert "EL" == _priority(corrected)
    cancelled = apply_event(_event("", "A13"), corrected)
    assert "EL" == _priority(cancelled)


def _stay_from_adt(store: SqlCareRecordStore, admission_type: str) -> tuple[str, str]:
    """A member on file with one earlier ED visit and heart failure, and the stay the feed's A03 made (3 days)."""
    member = make_member(store, codes=("I50.9",), ed_visits=1)
    visit = f"visit-{uuid.uuid4().hex[:10]}"
    discharged = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4)
    message = with_admission_type(adt("A03", member.member_id, visit, discharged_at=discharged,
                                      admitted_at=discharged - timedelta(days=3)), admission_type)
    _, event = parse_adt(message, time_zone=ZONE)
    assert event is not None
    encounter = apply_event(event, None)
    validate_resource(encounter)
    store.put_many([encounter])
    return member.member_id, visit


@pytest.mark.parametrize(("admission_type", "acute", "lace"), [
    ("E", True, 8),   # L3 A3 C1 E1
    ("U", True, 8),
    ("C", False, 5),  # L3 A0 C1 E1
])
def test_lace_is_scored_from_what_the_feed_sends(store: SqlCareRecordStore, admission_type: str, acute: bool,
                                                 lace: int) -> None:
    member_id, visit = _stay_from_adt(store, admission_type)
    context = get_clinical_context(store, ClinicalContextInput(member_id=member_id, encounter_id=visit))
    assert (3, acute, ["I50.9"], 1) == (context.stay.length_of_stay_days, context.stay.acute_admission,
                                        context.condition_codes, context.ed_visits_6mo)
    risk = score_readmission_risk(RiskInput(
        length_of_stay_days=context.stay.length_of_stay_days, acute_admission=context.stay.acute_admission,
        condition_codes=context.condition_codes, ed_visits_6mo=context.ed_visits_6mo))
    assert ("scored", lace) == (risk.status, risk.lace)


@pytest.mark.parametrize("admission_type", ["", "L"])
def test_without_a_usable_pv1_4_lace_is_not_scored_and_says_what_is_missing(store: SqlCareRecordStore,
                                                                           admission_type: str) -> None:
    member_id, visit = _stay_from_adt(store, admission_type)
    context = get_clinical_context(store, ClinicalContextInput(member_id=member_id, encounter_id=visit))
    assert context.stay.acute_admission is None
    risk = score_readmission_risk(RiskInput(
        length_of_stay_days=context.stay.length_of_stay_days, acute_admission=context.stay.acute_admission,
        condition_codes=context.condition_codes, ed_visits_6mo=context.ed_visits_6mo))
    assert ("insufficient_data", ["acute_admission"]) == (risk.status, risk.missing)


@pytest_asyncio.fixture
async def listener(client: Client, settings: Settings, store: SqlCareRecordStore,
                   task_queue: str) -> AsyncIterator[tuple[str, int, Settings]]:
    async with running_listener(client, settings, store, task_queue) as running:
        yield running


async def _send(host: str, port: int, message: str) -> str:
    reader, writer = await open_hl7_connection(host, port)
    try:
        writer.write(frame(message))
        await writer.drain()
        ack = await reader.readmessage()
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return str(ack.extract_field("MSA", 1, 1))


@pytest.mark.parametrize(("admission_type", "lace"), [("U", 7), ("", None)])
async def test_over_mllp_the_run_scores_lace_from_pv1_4_or_says_acuity_is_missing(
        client: Client, store: SqlCareRecordStore, listener, admission_type: str, lace: int | None) -> None:
    host, port, settings = listener
    member = make_member(store, codes=("I50.9",))
    visit = f"visit-{uuid.uuid4().hex[:10]}"
    discharged = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4)
    message = with_admission_type(adt("A03", member.member_id, visit, discharged_at=discharged,
                                      admitted_at=discharged - timedelta(days=3)), admission_type)
    assert "AA" == await _send(host, port, message)
    handle = client.get_workflow_handle(
        outreach_workflow_id(member.member_id, visit, settings.pseudonym_salt.get_secret_value()))
    status = await wait_for_status(handle, lambda s: bool(s.verdicts), timeout=60)
    assert lace == status.lace  # L3 A3 C1 E0 with PV1-4 U
    said = json.dumps(status.model_dump(mode="json"))
    if lace is None:  # the run's reasons name the missing input, as before issue 25
        assert "acute_admission" in said
    else:
        assert "acute_admission" not in said
