"""The ADT listener over a real TCP MLLP connection, against the real dev server and a real careloom worker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import hl7
import pytest
import pytest_asyncio
from hl7.mllp import open_hl7_connection
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from feeds.adt_listener import serve_adt
from runtime.metrics import REGISTRY
from runtime.settings import Settings
from store.records import SqliteCareRecordStore
from tests.feeds.hl7_messages import adt, frame
from tests.fhir_factory import make_member
from workflows.outreach_client import outreach_workflow_id


@pytest_asyncio.fixture
async def listener(client: Client, settings: Settings, store: SqliteCareRecordStore,
                   task_queue: str) -> AsyncIterator[tuple[str, int, Settings]]:
    """The listener on a free port, starting runs on this test's worker; its runs are terminated afterwards."""
    ours = settings.model_copy(update={"task_queue": task_queue})
    server = await serve_adt(ours, client, store, host="127.0.0.1", port=0)
    host, port = server.sockets[0].getsockname()[:2]
    yield host, port, ours
    server.close()
    await server.wait_closed()
    async for execution in client.list_workflows(f"TaskQueue = '{task_queue}' AND ExecutionStatus = 'Running'"):
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(execution.id).terminate("test finished")


class Connection:
    def __init__(self, reader, writer) -> None:  # noqa: ANN001
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


def _member(store: SqliteCareRecordStore) -> tuple[str, str]:
    member = make_member(store)
    return member.member_id, f"visit-{uuid.uuid4().hex[:10]}"


async def _status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    try:
        return (await client.get_workflow_handle(workflow_id).describe()).status
    except RPCError:
        return None


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


async def test_a_cancelled_discharge_cancels_the_run(client: Client, store, listener) -> None:
    host, port, settings = listener
    member_id, visit = _member(store)
    workflow_id = outreach_workflow_id(member_id, visit, settings.pseudonym_salt.get_secret_value())
    async with connect(host, port) as conn:
        assert "AA" == _ack(await conn.send(adt("A03", member_id, visit)))[0]
        cancelled = _ack(await conn.send(adt("A13", member_id, visit)))

    assert ("AA", "outreach run cancelled") == cancelled
    for _ in range(100):
        if await _status(client, workflow_id) == WorkflowExecutionStatus.CANCELED:
            break
        await asyncio.sleep(0.1)
    assert WorkflowExecutionStatus.CANCELED == await _status(client, workflow_id)
    encounter = store.get("Encounter", visit)
    assert ("in-progress", None) == (encounter["status"], encounter["period"].get("end"))


async def test_a_cancel_before_any_discharge_starts_nothing(client: Client, store, listener) -> None:
    host, port, settings = listener
    member_id, visit = _member(store)
    async with connect(host, port) as conn:
        assert ("AA", "") == _ack(await conn.send(adt("A01", member_id, visit)))
        assert ("AA", "no outreach run to cancel") == _ack(await conn.send(adt("A13", member_id, visit)))
    assert await _status(client, outreach_workflow_id(member_id, visit,
                                                      settings.pseudonym_salt.get_secret_value())) is None
    assert "in-progress" == store.get("Encounter", visit)["status"]


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
        assert "AA" == _ack(await conn.send(good[2]))[0]
    salt = settings.pseudonym_salt.get_secret_value()
    for member_id, visit in members:
        assert await _status(client, outreach_workflow_id(member_id, visit, salt)) is not None


@pytest.mark.parametrize(("message", "code", "names"), [
    (lambda m, v: adt("R01", m, v, message_type="ORU"), "AR", "MSH-9 message type ORU^R01 is not ADT"),
    (lambda m, v: adt("A03", m, v, version="3.0"), "AR", "MSH-12 version '3.0' is not supported"),
    (lambda m, v: adt("A03", "pt-nobody-" + v, v), "AE", "PID-3 identifies no member"),
    (lambda m, v: adt("A03", m, v, include_discharge=False), "AE", "ADT^A03 without PV1-45"),
    (lambda m, v: adt("A03", m, v, patient_class="X"), "AE", "PV1-2 patient class 'X' is not supported"),
])
async def test_messages_careloom_cannot_use_are_answered_with_the_reason(
        client: Client, store, listener, message, code: str, names: str) -> None:
    host, port, settings = listener
    member_id, visit = _member(store)
    sent = message(member_id, visit)
    async with connect(host, port) as conn:
        answer = await conn.send(sent)
        ack_code, reason = _ack(answer)
        assert hl7.parse(sent).extract_field("MSH", 1, 10) == answer.extract_field("MSA", 1, 2)
        # The connection still works for the next message.
        assert "AA" == _ack(await conn.send(adt("A03", *_member(store))))[0]
    assert code == ack_code
    assert names in reason
    assert store.get("Encounter", visit) is None
    assert await _status(client, outreach_workflow_id(member_id, visit,
                                                      settings.pseudonym_salt.get_secret_value())) is None


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
