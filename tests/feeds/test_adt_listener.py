"""The ADT listener over a real TCP MLLP connection, against the real dev server and a real careloom worker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import hl7
import pytest
import pytest_asyncio
from hl7.mllp import HL7StreamReader, HL7StreamWriter, open_hl7_connection
from structlog.testing import capture_logs
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from feeds.discharges import discharge_of
from guardrails.configured import outreach_policy
from runtime.metrics import REGISTRY
from runtime.settings import Settings
from store.sql_records import SqlCareRecordStore
from tests.feeds.hl7_messages import adt, frame
from tests.feeds.listeners import running_listener
from tests.fhir_factory import make_member
from workflows.outreach_client import outreach_workflow_id


@pytest_asyncio.fixture
async def listener(client: Client, settings: Settings, store: SqlCareRecordStore,
                   task_queue: str) -> AsyncIterator[tuple[str, int, Settings]]:
    """The listener on a free port, starting runs on this test's worker; its runs are terminated afterwards."""
    async with running_listener(client, settings, store, task_queue) as running:
        yield running


class Connection:
    def __init__(self, reader: HL7StreamReader, writer: HL7StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes | str) -> hl7.Message:
        """Write raw bytes (or one framed message) and read the next ACK."""
        self.writer.write(frame(data) if isinstance(data, str) else data)
        await self.writer.drain()
        return await asyncio.wait_for(self.reader.readmessage(), timeout=30)


@contextlib.asynccontextmanager
async def connect(host: str, port: int) -> AsyncIterator[Connection]:
    reader, writer = await open_hl7_connection(host, port)
    try:
        yield Connection(reader, writer)
    finally:
        writer.close()


def _ack(message: hl7.Message) -> tuple[str, str]:
    """(MSA-1 code, MSA-3 text with HL7 escapes undone)."""
    return str(message.extract_field("MSA", 1, 1)), message.unescape(str(message.extract_field("MSA", 1, 3)))


def _member(store: SqlCareRecordStore) -> tuple[str, str]:
    member = make_member(store)
    return member.member_id, f"visit-{uuid.uuid4().hex[:10]}"


async def _status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    try:
        return (await client.get_workflow_handle(workflow_id).describe()).status
    except RPCError:
        return None


async def _closed_status(client: Client, workflow_id: str, timeout: float = 15) -> WorkflowExecutionStatus | None:
    """The run's status once it has closed (a withdrawn run ends at its next step, not at the update)."""
    deadline = asyncio.get_running_loop().time() + timeout
    status = await _status(client, workflow_id)
    while status == WorkflowExecutionStatus.RUNNING and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        status = await _status(client, workflow_id)
    return status


async def test_a_discharge_starts_its_run_before_the_ack_and_a_resend_starts_nothing(
        client: Client, store, listener) -> None:
    host, port, settings = listener
    member_id, visit = _member(store)
    message = adt("A03", member_id, visit)
    workflow_id = outreach_workflow_id(member_id, visit, settings.pseudonym_salt.get_secret_value())
    before = REGISTRY.get_sample_value("careloom_adt_messages_total", {"event": "A03", "ack": "AA"}) or 0

    async with connect(host, port) as conn:
        first = _ack(await conn.send(message))
        assert await _status(client, workflow_id) is not None  # durably started before the ACK was sent
        second = _ack(await conn.send(message))

    assert ("AA", "") == first
    assert ("AA", "outreach run already exists") == second
    runs = [e async for e in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    assert 1 == len(runs)
    encounter = store.get("Encounter", visit)
    assert ("finished", f"Patient/{member_id}", "IMP") == (
        encounter["status"], encounter["subject"]["reference"], encounter["class"]["code"])
    assert before + 2 == REGISTRY.get_sample_value("careloom_adt_messages_total", {"event": "A03", "ack": "AA"})


async def test_a_cancelled_discharge_withdraws_the_run_and_is_no_longer_a_discharge(
        client: Client, store, listener) -> None:
    """A13 after an A03: the run is withdrawn (never terminated), the Encounter is in progress again with no
    period end, and the sweep would not find it."""
    host, port, settings = listener
    member_id, visit = _member(store)
    workflow_id = outreach_workflow_id(member_id, visit, settings.pseudonym_salt.get_secret_value())
    cancel = adt("A13", member_id, visit, control_id="ctl-a13-1")
    async with connect(host, port) as conn:
        assert "AA" == _ack(await conn.send(adt("A03", member_id, visit)))[0]
        stopped = _ack(await conn.send(cancel))
        closed = await _closed_status(client, workflow_id)
        # Withdrawing is idempotent too: a resent A13 finds the run already ended.
        again = _ack(await conn.send(cancel))

    assert ("AA", "outreach run withdrawn") == stopped
    assert ("AA", "the outreach run had already ended") == again
    assert WorkflowExecutionStatus.COMPLETED == closed
    encounter = store.get("Encounter", visit)
    assert ("in-progress", None) == (encounter["status"], encounter["period"].get("end"))
    assert "dischargeDisposition" not in encounter.get("hospitalization", {})
    assert discharge_of(encounter, outreach_policy(settings), settings.plan_time_zone) is None
    assert [] == [e["id"] for e in store.ended_between("Encounter", "2000-01-01", "2100-01-01")
                  if e["id"] == visit]


async def test_garbage_and_truncated_frames_lose_nothing_that_follows(client: Client, store, listener) -> None:
    """Garbage before a frame, a truncated frame, and a frame that is not HL7: the good messages after them
    are answered, on the same connection and on a new one; the listener keeps running."""
    host, port, settings = listener
    members = [_member(store) for _ in range(3)]
    good = [adt("A03", m, v) for m, v in members]
    async with connect(host, port) as conn:
        assert "AA" == _ack(await conn.send(b"\x00\xffnot hl7 at all\x1c\x0d" + frame(good[0])))[0]
        truncated = frame(adt("A03", *_member(store)))[:60]
        assert "AA" == _ack(await conn.send(truncated + frame(good[1])))[0]
        code, reason = _ack(await conn.send(b"\x0bhello world\x1c\x0d"))
        assert ("AR", "not an HL7 v2 message: it must begin with an MSH segment") == (code, reason)
    async with connect(host, port) as conn:
        # A message over the 1 MiB frame limit is refused (AR, from its MSH) and the next one is read.
        huge = adt("A03", *_member(store), control_id="ctl-huge") + "NTE|1||" + "x" * (1 << 20) + "\r"
        too_large = await conn.send(huge)
        assert ("AR", "ctl-huge") == (_ack(too_large)[0], str(too_large.extract_field("MSA", 1, 2)))
        assert "AA" == _ack(await conn.send(good[2]))[0]
    salt = settings.pseudonym_salt.get_secret_value()
    for member_id, visit in members:
        assert await _status(client, outreach_workflow_id(member_id, visit, salt)) is not None


async def test_a_cancelled_admission_is_cancelled_and_an_update_changes_what_it_carries(
        client: Client, store, listener) -> None:
    host, port, settings = listener
    salt = settings.pseudonym_salt.get_secret_value()
    admitted = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    member_id, visit = _member(store)
    async with connect(host, port) as conn:
        assert ("AA", "") == _ack(await conn.send(adt("A01", member_id, visit, admitted_at=admitted)))
        assert ("in-progress", "2026-03-02T09:30:00Z") == (
            store.get("Encounter", visit)["status"], store.get("Encounter", visit)["period"]["start"])
        assert ("AA", "no outreach run to withdraw") == _ack(await conn.send(adt("A11", member_id, visit)))
    assert "cancelled" == store.get("Encounter", visit)["status"]
    assert await _status(client, outreach_workflow_id(member_id, visit, salt)) is None

    # A08 after a discharge: the new discharge time and disposition replace the old; no second run.
    member_id, visit = _member(store)
    first, corrected = datetime.now(UTC) - timedelta(hours=5), datetime.now(UTC) - timedelta(hours=3)
    async with connect(host, port) as conn:
        assert "AA" == _ack(await conn.send(adt("A03", member_id, visit, discharged_at=first)))[0]
        assert ("AA", "") == _ack(await conn.send(
            adt("A08", member_id, visit, discharged_at=corrected, disposition="03")))
    encounter = store.get("Encounter", visit)
    assert "finished" == encounter["status"]
    assert corrected.replace(microsecond=0) == datetime.fromisoformat(encounter["period"]["end"])
    assert "snf" == encounter["hospitalization"]["dischargeDisposition"]["coding"][0]["code"]
    workflow_id = outreach_workflow_id(member_id, visit, salt)
    assert 1 == len([e async for e in client.list_workflows(f"WorkflowId = '{workflow_id}'")])


@pytest.mark.parametrize(("message", "code", "names", "err"), [
    (lambda m, v: adt("R01", m, v, message_type="ORU"), "AR", "MSH-9 message type ORU^R01 is not ADT",
     "ERR||MSH^1^9|200^Unsupported message type^HL70357|E"),
    (lambda m, v: adt("A03", m, v, version="3.0"), "AR", "MSH-12 version '3.0' is not supported",
     "ERR||MSH^1^12|203^Unsupported version id^HL70357|E"),
    (lambda m, v: adt("A03", m, v, version="2.1"), "AR", "MSH-12 version '2.1' is not supported",
     "ERR|MSH^1^12^203&Unsupported version id&HL70357"),
    (lambda m, v: adt("A03", "pt-nobody-" + v, v), "AE", "PID-3 identifies no member",
     "ERR||PID^1^3|204^Unknown key identifier^HL70357|E"),
    (lambda m, v: adt("A03", m, v, include_discharge=False), "AE", "ADT^A03 without PV1-45",
     "ERR||PV1^1^45|101^Required field missing^HL70357|E"),
    (lambda m, v: adt("A03", m, ""), "AE", "PV1-19 (visit number) is empty",
     "ERR||PV1^1^19|101^Required field missing^HL70357|E"),
    (lambda m, v: adt("A03", m, v, patient_class="X"), "AE", "PV1-2 patient class 'X' is not supported",
     "ERR||PV1^1^2|103^Table value not found^HL70357|E"),
])
async def test_messages_careloom_cannot_use_are_answered_with_the_reason(
        client: Client, store, listener, message, code: str, names: str, err: str) -> None:
    host, port, settings = listener
    member_id, visit = _member(store)
    sent = message(member_id, visit)
    label = "non-adt" if "ORU" in names else "A03"
    before = REGISTRY.get_sample_value("careloom_adt_messages_total", {"event": label, "ack": code}) or 0
    async with connect(host, port) as conn:
        answer = await conn.send(sent)
        ack_code, reason = _ack(answer)
        assert hl7.parse(sent).extract_field("MSH", 1, 10) == answer.extract_field("MSA", 1, 2)
        # The connection still works for the next message.
        assert "AA" == _ack(await conn.send(adt("A03", *_member(store))))[0]
    assert code == ack_code
    assert names in reason
    assert err == str(answer.segment("ERR"))
    assert store.get("Encounter", visit) is None
    assert await _status(client, outreach_workflow_id(member_id, visit,
                                                      settings.pseudonym_salt.get_secret_value())) is None
    assert before + 1 == REGISTRY.get_sample_value("careloom_adt_messages_total", {"event": label, "ack": code})


async def test_a_temporal_outage_is_answered_ae_so_the_sender_resends(store, settings, listener) -> None:
    """With Temporal unreachable the discharge is stored but not acknowledged AA: the sender will resend."""
    from temporalio.client import Client as TemporalClient

    from feeds.adt_listener import AdtListener
    from tests.net import free_port

    unreachable = await TemporalClient.connect(f"127.0.0.1:{free_port()}", lazy=True)
    member_id, visit = _member(store)
    ack = hl7.parse(await AdtListener(listener[2], unreachable, store).handle(adt("A03", member_id, visit)))
    code, reason = _ack(ack)
    assert "AE" == code and "resend" in reason
    assert "ERR|||207^Application internal error^HL70357|E" == str(ack.segment("ERR"))
    # Stored all the same: the sender's resend, or the next sweep, starts the run.
    assert "finished" == store.get("Encounter", visit)["status"]


async def test_a_cancel_while_temporal_is_unreachable_is_answered_ae(store, settings, client, listener) -> None:
    """An A13 whose run cannot be looked up is not acknowledged AA: the run might still be going."""
    from temporalio.client import Client as TemporalClient

    from feeds.adt_listener import AdtListener
    from tests.net import free_port

    host, port, ours = listener
    member_id, visit = _member(store)
    async with connect(host, port) as conn:
        assert "AA" == _ack(await conn.send(adt("A03", member_id, visit)))[0]
    unreachable = await TemporalClient.connect(f"127.0.0.1:{free_port()}", lazy=True)
    code, reason = _ack(hl7.parse(await AdtListener(ours, unreachable, store).handle(adt("A13", member_id, visit))))
    assert "AE" == code and "resend" in reason
    workflow_id = outreach_workflow_id(member_id, visit, ours.pseudonym_salt.get_secret_value())
    assert await _status(client, workflow_id) in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED)


async def test_an_emergency_visit_discharge_is_stored_and_starts_nothing(client: Client, store, listener) -> None:
    host, port, settings = listener
    member_id, visit = _member(store)
    async with connect(host, port) as conn:
        assert ("AA", "not an inpatient discharge: no outreach run") == _ack(
            await conn.send(adt("A03", member_id, visit, patient_class="E")))
    assert ("finished", "EMER") == (store.get("Encounter", visit)["status"],
                                    store.get("Encounter", visit)["class"]["code"])
    assert await _status(client, outreach_workflow_id(member_id, visit,
                                                      settings.pseudonym_salt.get_secret_value())) is None


async def test_a_cancel_on_another_connection_never_overtakes_the_discharge_start(
        client: Client, store, listener) -> None:
    """A03 on one connection, its A13 on another while the run is being started: the A13 waits for the visit,
    then withdraws the run; the episode does not end with a running run and an undischarged Encounter."""
    host, port, settings = listener
    member_id, visit = _member(store)
    async with connect(host, port) as first, connect(host, port) as second:
        discharge = asyncio.create_task(first.send(adt("A03", member_id, visit)))
        await asyncio.sleep(0.01)  # the A03 is in, its start in flight
        stopped = await second.send(adt("A13", member_id, visit))
        assert "AA" == _ack(await discharge)[0]
    assert ("AA", "outreach run withdrawn") == _ack(stopped)
    workflow_id = outreach_workflow_id(member_id, visit, settings.pseudonym_salt.get_secret_value())
    assert WorkflowExecutionStatus.COMPLETED == await _closed_status(client, workflow_id)
    assert "in-progress" == store.get("Encounter", visit)["status"]


async def test_a_discharge_older_than_the_lookback_is_acknowledged_stored_and_not_started(
        client: Client, store, listener) -> None:
    """An A03 for a discharge 400 days ago (beyond the 30-day lookback) is AA with the reason, the Encounter
    is stored, no run starts and the hold is logged (before: a run started and contacted the member)."""
    host, port, settings = listener
    member_id, visit = _member(store)
    with capture_logs() as logs:
        async with connect(host, port) as conn:
            code, reason = _ack(await conn.send(adt("A03", member_id, visit,
                                                    discharged_at=datetime.now(UTC) - timedelta(days=400))))
    assert "AA" == code
    assert reason.startswith("stored; no outreach started: discharged 400 days ago, before the 30-day lookback")
    assert "finished" == store.get("Encounter", visit)["status"]
    assert await _status(client, outreach_workflow_id(member_id, visit,
                                                      settings.pseudonym_salt.get_secret_value())) is None
    assert [{"event": "adt.discharge_held", "reason": "too_old", "log_level": "info"}] == [
        log for log in logs if log["event"] == "adt.discharge_held"]
