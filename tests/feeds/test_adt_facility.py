"""An Encounter created from one facility's ADT feed is that facility's: another allowed sender's events for it
are refused (AR, nothing applied, no run withdrawn). Over a real MLLP socket, the real dev server and worker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import hl7
import pytest
import pytest_asyncio
from structlog.testing import capture_logs
from temporalio.client import Client, WorkflowExecutionStatus

from feeds.adt import FACILITY_TAG_SYSTEM, AdtEvent, AdtRefused, apply_event, owner_of
from runtime.settings import Settings
from store.connect import configured_database
from store.fhir_validation import validate_resource
from store.ledger import DecisionLedger
from store.sql_records import SqlCareRecordStore
from tests.conftest import wait_for_status
from tests.feeds.hl7_messages import adt, frame
from tests.feeds.listeners import running_listener
from tests.feeds.test_adt_listener import _closed_status
from tests.fhir_factory import HIGH_RISK, make_member
from workflows.outreach import MemberOutreachWorkflow
from workflows.outreach_client import outreach_workflow_id

_OWNER, _OTHER = "GENERAL_HOSPITAL", "OTHER_HOSPITAL"
_REFUSAL = f"MSH-4 sending facility '{_OTHER}' may not change this PV1-19 visit: another facility's ADT feed"


@pytest_asyncio.fixture
async def listener(client: Client, settings: Settings, store: SqlCareRecordStore,
                   task_queue: str) -> AsyncIterator[tuple[str, int, Settings]]:
    """A listener that allows both facilities and whose runs always ask a person (so they park on an approval);
    its runs are terminated afterwards."""
    async with running_listener(client, settings, store, task_queue, adt_allowed_facilities=[_OWNER, _OTHER],
                                min_confidence=0.999, contact_window_start_hour=0,
                                contact_window_end_hour=24) as running:
        yield running


def _from(message: str, facility: str, application: str = "HOSP_ADT") -> str:
    """The fixture message as sent by another MSH-3/MSH-4 (the fixture's are HOSP_ADT/GENERAL_HOSPITAL)."""
    assert message.startswith("MSH|^~\\&|HOSP_ADT|GENERAL_HOSPITAL|")
    return message.replace("|HOSP_ADT|GENERAL_HOSPITAL|", f"|{application}|{facility}|", 1)


async def _send(host: str, port: int, message: str) -> hl7.Message:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(frame(message))
        await writer.drain()
        block = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 30)
        return hl7.parse(block[1:-2].decode())
    finally:
        writer.close()


def _ack(message: hl7.Message) -> tuple[str, str]:
    return str(message.extract_field("MSA", 1, 1)), message.unescape(str(message.extract_field("MSA", 1, 3)))


def _visit() -> str:
    return f"visit-{uuid.uuid4().hex[:10]}"


async def test_another_facilitys_cancel_leaves_the_discharge_and_its_pending_approval(
        client: Client, store, listener) -> None:
    """Facility A's A03 starts a run that parks on an approval; facility B's A13 for that visit is AR (ERR 207 at
    MSH-4), the Encounter is unchanged, the run keeps its approval and no withdrawn entry is written, and the log
    names the facilities but no patient or visit (before: AA 'outreach run withdrawn'). A's own A13 then
    withdraws the run."""
    host, port, settings = listener
    member_id, visit = make_member(store, **HIGH_RISK).member_id, _visit()
    assert "AA" == _ack(await _send(host, port, adt("A03", member_id, visit)))[0]
    handle = client.get_workflow_handle(outreach_workflow_id(member_id, visit,
                                                             settings.pseudonym_salt.get_secret_value()))
    pending = (await wait_for_status(handle, lambda s: len(s.pending_approvals) > 0)).pending_approvals
    discharged = store.get("Encounter", visit)

    with capture_logs() as logs:
        answer = await _send(host, port, _from(adt("A13", member_id, visit, control_id="ctl-b-a13"), _OTHER))
    code, reason = _ack(answer)
    assert "AR" == code, reason
    assert reason.startswith(_REFUSAL)
    assert "ERR||MSH^1^4|207^Application internal error^HL70357|E" == str(answer.segment("ERR"))
    assert discharged == store.get("Encounter", visit)
    status = await handle.query(MemberOutreachWorkflow.status)
    assert WorkflowExecutionStatus.RUNNING == (await handle.describe()).status
    assert [p.approval_id for p in pending] == [p.approval_id for p in status.pending_approvals]
    refused = [e for e in logs if e["event"] == "adt.encounter_owner_refused"]
    assert [("A13", "ctl-b-a13", _OTHER, _OWNER)] == [
        (e["hl7_event"], e["control_id"], e["sending_facility"], e["owner_facility"]) for e in refused]
    assert not any(member_id in str(e) or visit in str(e) or "Synthetic" in str(e) for e in logs)

    own = await _send(host, port, adt("A13", member_id, visit, control_id="ctl-a-a13"))
    assert ("AA", "outreach run withdrawn") == _ack(own)
    # The ledger is written as the run ends: every withdrawal on record is A's, none B's.
    assert WorkflowExecutionStatus.COMPLETED == await _closed_status(client, handle.id)
    withdrawn = [e for e in DecisionLedger(configured_database(settings)).entries(handle.id) if e.event == "withdrawn"]
    assert {p.approval_id for p in pending} <= {e.approval_id for e in withdrawn}
    assert {(f"adt:{_OWNER}", True)} == {(e.actor, "MSH-10 ctl-a-a13" in (e.reason or "")) for e in withdrawn}


async def test_no_event_from_another_facility_changes_the_encounter(store, listener) -> None:
    """A01, A03, A08, A11 and A13 from facility B for A's visit are each AR and leave the stored Encounter as
    it was (before: each was applied, and the A11 cancelled A's episode)."""
    host, port, _ = listener
    member_id, visit = make_member(store).member_id, _visit()
    # An emergency visit: stored, no run, so the test is about the Encounter alone.
    assert "AA" == _ack(await _send(host, port, adt("A03", member_id, visit, patient_class="E")))[0]
    stored = store.get("Encounter", visit)
    answers = {event: _ack(await _send(host, port, _from(adt(event, member_id, visit, disposition="20"), _OTHER)))
               for event in ("A01", "A03", "A08", "A11", "A13")}
    assert {event: "AR" for event in answers} == {event: code for event, (code, _) in answers.items()}
    assert all(reason.startswith(_REFUSAL) for _, reason in answers.values())
    assert stored == store.get("Encounter", visit)


async def test_the_creating_facility_is_recorded_and_kept_and_imported_encounters_are_unchanged(
        store, listener) -> None:
    """The Encounter an A03 creates carries the sender's MSH-4 as a meta.tag that validates as FHIR R4; the
    facility's later A08 (through another MSH-3, e.g. an interface engine) keeps it. An Encounter imported from
    files has no owner and still takes any allowed facility's events (today's behaviour, documented)."""
    host, port, _ = listener
    member = make_member(store)
    visit = _visit()
    assert "AA" == _ack(await _send(host, port, adt("A03", member.member_id, visit, patient_class="E")))[0]
    assert [{"system": FACILITY_TAG_SYSTEM, "code": _OWNER}] == store.get("Encounter", visit)["meta"]["tag"]
    validate_resource(store.get("Encounter", visit))
    update = _from(adt("A08", member.member_id, visit, patient_class="E", disposition="03"), _OWNER, "ENGINE")
    assert "AA" == _ack(await _send(host, port, update))[0]
    assert (_OWNER, "snf") == (owner_of(store.get("Encounter", visit)), store.get("Encounter", visit)[
        "hospitalization"]["dischargeDisposition"]["coding"][0]["code"])

    assert owner_of(store.get("Encounter", member.encounter_id)) is None
    other = _from(adt("A08", member.member_id, member.encounter_id, disposition="03"), _OTHER)
    assert "AA" == _ack(await _send(host, port, other))[0]
    imported = store.get("Encounter", member.encounter_id)
    assert ("snf", None) == (imported["hospitalization"]["dischargeDisposition"]["coding"][0]["code"],
                             owner_of(imported))


def _event(kind: str, facility: str) -> AdtEvent:
    return AdtEvent(event=kind, control_id="ctl-1", member_id="pt-1", encounter_id="visit-1", patient_class="I",
                    admitted_at=None, discharged_at=datetime(2026, 3, 2, tzinfo=UTC), disposition=None,
                    facility=facility)


def test_a_facility_name_with_repeated_spaces_is_recorded_as_a_valid_code_and_still_owns_its_visit() -> None:
    """MSH-4 'GEN  HOSP' is recorded as 'GEN HOSP' (a FHIR code has no repeated spaces, so the A03 would
    otherwise be refused as invalid FHIR) and the same feed's next event is accepted."""
    created = apply_event(_event("A03", "GEN  HOSP"), None)
    validate_resource(created)
    assert "GEN HOSP" == owner_of(created)
    assert "in-progress" == apply_event(_event("A13", "GEN  HOSP"), created)["status"]


@pytest.mark.parametrize("facility", ["", "general_hospital", "GENERAL_HOSPITAL2"])
def test_only_the_exact_owning_facility_passes(facility: str) -> None:
    """An empty MSH-4, another case, or a longer name is not the owner: AR before anything is changed."""
    created = apply_event(_event("A03", _OWNER), None)
    with pytest.raises(AdtRefused) as refused:
        apply_event(_event("A11", facility), created)
    assert ("AR", "207", ("MSH", 4)) == (refused.value.ack, refused.value.error, refused.value.location)
    assert "finished" == created["status"]
