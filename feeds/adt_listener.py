"""The ADT listener: an HL7 v2 MLLP server (``hl7.mllp``) that turns discharges into outreach runs.

For each framed message, in order on its connection (original-mode
acknowledgement: the sender waits for the ACK before the next message):

1. parse and check it (:mod:`feeds.adt`);
2. apply it to the Encounter in the records store (validated FHIR R4);
3. A03: start the discharge's outreach run and wait until Temporal has it
   durably (``start_discharges``, idempotent by the run's business key: a
   resent message starts nothing); A13 and A11: cancel the episode's run if
   one is running;
4. only then answer: AA, or AE (fix the data or retry later, e.g. Temporal
   unavailable) / AR (never resend as is) with the reason in MSA-3.

Framing is the library's MLLP reader (<VT> … <FS><CR>); bytes before a
frame's start block (garbage, or a truncated frame the sender gave up on) are
dropped and the frame after them is still read, so a bad frame never loses a
good one that follows. Nothing raised by one message reaches the server: the
connection goes on. Logs carry the event, control id and ACK code, never PHI.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

import hl7
import structlog
from hl7.mllp import start_hl7_server
from hl7.mllp.streams import (
    CARRIAGE_RETURN,
    END_BLOCK,
    START_BLOCK,
    HL7StreamReader,
    HL7StreamWriter,
)
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from feeds.adt import AdtEvent, AdtRefused, apply_event, parse_adt
from feeds.discharges import discharge_of, start_discharges
from runtime.metrics import ADT_LATENCY, ADT_MESSAGES
from runtime.settings import Settings
from store.fhir_validation import InvalidResource, validate_resource
from store.records import SqliteCareRecordStore

__all__ = ["AdtListener", "serve_adt"]

log = structlog.get_logger(__name__)

FRAME_LIMIT = 1 << 20
"""Largest message accepted (1 MiB); a longer one is dropped and the connection goes on."""
_SEPARATOR = END_BLOCK + CARRIAGE_RETURN
_HL7_ESCAPES = str.maketrans({"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\",
                              "\r": " ", "\n": " "})


def _ack_text(message: hl7.Message | None, code: str, reason: str | None) -> str:
    """The ACK for a message (or a bare one when the message had no usable MSH), MSA-3 = reason."""
    text = (reason or "")[:200].translate(_HL7_ESCAPES)
    if message is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        return f"MSH|^~\\&|careloom|plan|||{stamp}||ACK|{time.time_ns()}|P|2.5\rMSA|{code}||{text}\r"
    ack = message.create_ack(code, application="careloom", facility="plan")
    if text:
        ack.segment("MSA").assign_field(text, 3)
    return str(ack)


class AdtListener:
    """Handles ADT messages for one records store and one Temporal namespace."""

    def __init__(self, settings: Settings, client: Client, store: SqliteCareRecordStore) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.policy = settings.guardrail_policy()

    async def handle(self, text: str) -> str:
        """The ACK for one message, after its effects are durable."""
        began = time.perf_counter()
        message: hl7.Message | None = None
        event_name = "unknown"
        try:
            message, event = parse_adt(text, time_zone=self.settings.plan_time_zone)
            event_name = event.event if event else str(message.extract_field("MSH", 1, 9, 1, 2) or "other")
            code, reason = ("AA", f"event {event_name} not used by careloom") if event is None \
                else await self._apply(event)
        except AdtRefused as refused:
            code, reason, message = refused.ack, refused.reason, refused.message or message
            if message is not None:
                event_name = str(message.extract_field("MSH", 1, 9, 1, 2) or "unknown")
        except Exception as err:  # noqa: BLE001 - one message's failure never stops the listener
            log.exception("adt.message_failed", hl7_event=event_name, error=type(err).__name__)
            code, reason = "AE", f"careloom could not process the message ({type(err).__name__}); resend it"
        ADT_MESSAGES.labels(event_name, code).inc()
        ADT_LATENCY.observe(time.perf_counter() - began)
        control = str(message.extract_field("MSH", 1, 10)) if message is not None else None
        log.info("adt.message", hl7_event=event_name, control_id=control, ack=code)
        try:
            return _ack_text(message, code, reason)
        except Exception:  # noqa: BLE001 - an MSH too broken to answer from: a bare ACK
            return _ack_text(None, code, reason)

    async def _apply(self, event: AdtEvent) -> tuple[str, str | None]:
        if self.store.get("Patient", event.member_id) is None:
            raise AdtRefused("AE", f"PID-3 identifies no member in the care records store; import the member "
                                   f"(Patient/{event.member_id}) first, then resend")
        existing = self.store.get("Encounter", event.encounter_id)
        encounter = apply_event(event, existing)
        try:
            validate_resource(encounter)
        except InvalidResource as err:
            raise AdtRefused("AE", f"the encounter it describes is not valid FHIR: {err}") from None
        self.store.put_many([encounter])
        if event.event == "A03":
            return await self._start(encounter)
        if event.event in ("A11", "A13"):
            return "AA", await self._cancel(event)
        return "AA", None

    async def _start(self, encounter: dict) -> tuple[str, str | None]:
        discharge = discharge_of(encounter, self.policy, self.settings.plan_time_zone)
        if discharge is None:
            return "AA", "not an inpatient discharge: no outreach run"
        report = await start_discharges(self.client, self.settings, [discharge], trigger="adt")
        if report.failed:
            return "AE", "the outreach run could not be started (Temporal unavailable?); resend the message"
        if report.tcm_missed:
            return "AA", "outreach started; the TCM contact window has already passed (tcm_missed)"
        return "AA", None if report.started else "outreach run already exists"

    async def _cancel(self, event: AdtEvent) -> str | None:
        """Cancel the episode's outreach run if one is running; the reason for the ACK."""
        from workflows.outreach_client import outreach_workflow_id

        workflow_id = outreach_workflow_id(event.member_id, event.encounter_id,
                                           self.settings.pseudonym_salt.get_secret_value())
        handle = self.client.get_workflow_handle(workflow_id)
        try:
            described = await handle.describe()
        except RPCError:
            return "no outreach run to cancel"
        if described.status != WorkflowExecutionStatus.RUNNING:
            return "the outreach run had already ended"
        await handle.cancel()
        log.info("adt.run_cancelled", hl7_event=event.event, workflow_id=workflow_id)
        return "outreach run cancelled"

    async def _frames(self, reader: HL7StreamReader):  # noqa: ANN202 - async generator of message texts
        while True:
            try:
                block = await reader.readuntil(_SEPARATOR)
            except asyncio.IncompleteReadError as err:
                if err.partial.strip():
                    log.warning("adt.frame_truncated", bytes=len(err.partial))
                return
            except asyncio.LimitOverrunError as err:
                log.warning("adt.frame_too_large", limit=FRAME_LIMIT)
                with contextlib.suppress(Exception):
                    await reader.readexactly(err.consumed)  # drop what was buffered and read on
                continue
            start = block.rfind(START_BLOCK)
            if start < 0:
                log.warning("adt.frame_without_start_block", bytes=len(block))
                continue
            if start > 0:
                log.warning("adt.bytes_before_frame_dropped", bytes=start)
            yield block[start + 1:-len(_SEPARATOR)].decode("utf-8", "replace")

    async def connection(self, reader: HL7StreamReader, writer: HL7StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        log.info("adt.connected", peer=str(peer))
        try:
            async for text in self._frames(reader):
                ack = await self.handle(text)
                writer.writeblock(ack.encode("utf-8"))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            log.info("adt.disconnected", peer=str(peer))


async def serve_adt(settings: Settings, client: Client, store: SqliteCareRecordStore, *,
                    host: str | None = None, port: int | None = None) -> asyncio.Server:
    """Start listening (``server.close()`` stops it); port 0 picks a free one (``server.sockets[0]``)."""
    listener = AdtListener(settings, client, store)
    server = await start_hl7_server(listener.connection, host or settings.adt_host,
                                    settings.adt_port if port is None else port, limit=FRAME_LIMIT)
    log.info("adt.listening", address=str(server.sockets[0].getsockname()))
    return server
