"""The ADT listener: an HL7 v2 MLLP server (``hl7.mllp``) that turns discharges into outreach runs.

For each framed message, in order on its connection (original-mode
acknowledgement: the sender waits for the ACK before the next message):

1. parse and check it (:mod:`feeds.adt`);
2. apply it to the Encounter in the records store (validated FHIR R4);
3. A03: start the discharge's outreach run and wait until Temporal has it
   durably (``start_discharges``, idempotent by the run's business key: a
   resent message starts nothing); A13 and A11: terminate the episode's run
   if one is running (see :meth:`AdtListener._stop` for why not cancel);
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
import weakref
from collections.abc import AsyncIterator
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
from temporalio.service import RPCError, RPCStatusCode

from feeds.adt import AdtEvent, AdtRefused, apply_event, event_label, parse_adt
from feeds.discharges import discharge_of, start_discharges
from runtime.metrics import ADT_LATENCY, ADT_MESSAGES
from runtime.settings import Settings
from store.fhir_validation import InvalidResource, validate_resource
from store.records import SqlCareRecordStore

__all__ = ["AdtListener", "serve_adt"]

log = structlog.get_logger(__name__)

FRAME_LIMIT = 1 << 20
"""Largest message accepted (1 MiB); a longer one is dropped and the connection goes on."""
_SEPARATOR = END_BLOCK + CARRIAGE_RETURN
_TOO_LARGE = "\x00too-large\x00"  # marks, between _frames and connection, the MSH of an oversized frame
_HL7_ESCAPES = str.maketrans({"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\",
                              "\r": " ", "\n": " "})
# HL7 table 0357, message error condition codes (what the ERR segment says).
_ERROR_NAMES = {"100": "Segment sequence error", "101": "Required field missing", "102": "Data type error",
                "103": "Table value not found", "200": "Unsupported message type", "201": "Unsupported event code",
                "203": "Unsupported version id", "204": "Unknown key identifier", "205": "Duplicate key identifier",
                "207": "Application internal error"}


class _Unavailable(AdtRefused):
    """Temporal could not be reached: AE, so the sender resends once it is back."""

    def __init__(self, what: str) -> None:
        super().__init__("AE", f"{what} (Temporal unavailable?); resend the message", error="207")


def _err_segment(version: str, error: str, location: tuple[str, int | None] | None, separators: str) -> str:
    """ERR for an AE/AR: v2.5+ ERR-2 location, ERR-3 code, ERR-4 severity; v2.3/2.4 the ERR-1 ELD form."""
    field, component, sub = separators[1], separators[3], separators[4]
    segment, position = location or ("", None)
    where = component.join([segment, "1" if segment else "", str(position or "")]).rstrip(component)
    name = _ERROR_NAMES.get(error, "Application internal error")
    try:
        legacy = tuple(int(p) for p in version.split(".")[:2]) < (2, 5)
    except ValueError:
        legacy = False
    if legacy:
        return field.join(["ERR", component.join([segment, "1" if segment else "", str(position or ""),
                                                  sub.join([error, name, "HL70357"])])])
    return field.join(["ERR", "", where, component.join([error, name, "HL70357"]), "E"])


def _ack_text(message: hl7.Message | None, code: str, reason: str | None, *, error: str | None = None,
              location: tuple[str, int | None] | None = None) -> str:
    """The ACK for a message (or a bare one when the message had no usable MSH): MSA-3 the reason, ERR for
    AE/AR."""
    if message is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        text = (reason or "")[:200].translate(_HL7_ESCAPES)
        ack = f"MSH|^~\\&|careloom|plan|||{stamp}||ACK|{time.time_ns()}|P|2.5\rMSA|{code}||{text}\r"
        if code != "AA":
            ack += _err_segment("2.5", error or "207", location, "\r|~^&") + "\r"
        return ack
    ack = message.create_ack(code, application="careloom", facility="plan")
    if reason:
        ack.segment("MSA").assign_field(message.escape(reason[:200].replace("\r", " ").replace("\n", " ")), 3)
    text = str(ack).rstrip("\r")
    if code != "AA":
        version = str(message.extract_field("MSH", 1, 12))
        text += message.separators[0] + _err_segment(version, error or "207", location, message.separators)
    return text + "\r"


class AdtListener:
    """Handles ADT messages for one records store and one Temporal namespace."""

    def __init__(self, settings: Settings, client: Client, store: SqlCareRecordStore) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.policy = settings.guardrail_policy()
        # One message at a time per visit, across connections: an A13 never overtakes its A03's start.
        self._visits: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def handle(self, text: str) -> str:
        """The ACK for one message, after its effects are durable."""
        began = time.perf_counter()
        message: hl7.Message | None = None
        error: str | None = None
        location: tuple[str, int | None] | None = None
        try:
            message, event = parse_adt(text, time_zone=self.settings.plan_time_zone)
            code, reason = ("AA", f"event {event_label(message)} not used by careloom") if event is None \
                else await self._apply(event)
        except AdtRefused as refused:
            code, reason, message = refused.ack, refused.reason, refused.message or message
            error, location = refused.error, refused.location
        except Exception as err:  # noqa: BLE001 - one message's failure never stops the listener
            # The error type only: an exception's text may quote the message (PHI).
            log.error("adt.message_failed", hl7_event=event_label(message), error=type(err).__name__)
            code, reason = "AE", f"careloom could not process the message ({type(err).__name__}); resend it"
            error = "207"
        label = event_label(message)
        ADT_MESSAGES.labels(label, code).inc()
        ADT_LATENCY.observe(time.perf_counter() - began)
        control = None
        with contextlib.suppress(Exception):
            control = str(message.extract_field("MSH", 1, 10)) if message is not None else None
        log.info("adt.message", hl7_event=label, control_id=control, ack=code)
        try:
            return _ack_text(message, code, reason, error=error, location=location)
        except Exception:  # noqa: BLE001 - an MSH too broken to answer from: a bare ACK
            return _ack_text(None, code, reason, error=error, location=location)

    async def too_large(self, msh: str) -> str:
        """The AR for a message over FRAME_LIMIT, answered from its MSH segment alone."""
        reason = f"the message is larger than {FRAME_LIMIT} bytes; nothing was stored"
        try:
            message = hl7.parse(msh + "\r")
            message.segment("MSH")
        except Exception:  # noqa: BLE001 - an unreadable MSH: a bare ACK
            message = None
        label = event_label(message)
        ADT_MESSAGES.labels(label, "AR").inc()
        log.info("adt.message", hl7_event=label, ack="AR", too_large=True)
        try:
            return _ack_text(message, "AR", reason, error="207")
        except Exception:  # noqa: BLE001
            return _ack_text(None, "AR", reason, error="207")

    async def _apply(self, event: AdtEvent) -> tuple[str, str | None]:
        lock = self._visits.get(event.encounter_id)
        if lock is None:
            lock = self._visits[event.encounter_id] = asyncio.Lock()
        async with lock:
            return await self._apply_locked(event)

    async def _apply_locked(self, event: AdtEvent) -> tuple[str, str | None]:
        if self.store.get("Patient", event.member_id) is None:
            raise AdtRefused("AE", f"PID-3 identifies no member in the care records store; import the member "
                                   f"(Patient/{event.member_id}) first, then resend", error="204",
                             location=("PID", 3))
        existing = self.store.get("Encounter", event.encounter_id)
        encounter = apply_event(event, existing)
        try:
            validate_resource(encounter)
        except InvalidResource as err:
            raise AdtRefused("AE", f"the encounter it describes is not valid FHIR: {err}", error="207") from None
        self.store.put_many([encounter])
        if event.event == "A03":
            return await self._start(encounter)
        if event.event in ("A11", "A13"):
            return "AA", await self._stop(event)
        return "AA", None

    async def _start(self, encounter: dict) -> tuple[str, str | None]:
        discharge = discharge_of(encounter, self.policy, self.settings.plan_time_zone)
        if discharge is None:
            return "AA", "not an inpatient discharge: no outreach run"
        report = await start_discharges(self.client, self.settings, [discharge], trigger="adt", policy=self.policy)
        if report.failed:
            raise _Unavailable("the outreach run could not be started")
        if report.tcm_missed:
            return "AA", "outreach started; the TCM contact window has already passed (tcm_missed)"
        return "AA", None if report.started else "outreach run already exists"

    async def _stop(self, event: AdtEvent) -> str | None:
        """Stop the episode's outreach run if one is running; the reason for the ACK.

        Terminated, not cancelled: the outreach workflow turns a cancelled activity into a tool failure
        and goes on (a cancel during an activity may let the run execute further actions), whereas a
        terminated run schedules nothing more. The reason is in the run's history.
        """
        from workflows.outreach_client import outreach_workflow_id

        workflow_id = outreach_workflow_id(event.member_id, event.encounter_id,
                                           self.settings.pseudonym_salt.get_secret_value())
        handle = self.client.get_workflow_handle(workflow_id)
        try:
            described = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return "no outreach run to stop"
            raise _Unavailable("the outreach run could not be looked up") from None
        except Exception:  # noqa: BLE001 - e.g. a client that cannot connect
            raise _Unavailable("the outreach run could not be looked up") from None
        if described.status != WorkflowExecutionStatus.RUNNING:
            return "the outreach run had already ended"
        what = "cancel discharge" if event.event == "A13" else "cancel admit"
        try:
            await handle.terminate(reason=f"ADT^{event.event} ({what}), MSH-10 {event.control_id}: the episode "
                                          "is no longer a discharge")
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:  # it closed in between
                return "the outreach run had already ended"
            raise _Unavailable("the outreach run could not be stopped") from None
        log.info("adt.run_terminated", hl7_event=event.event, control_id=event.control_id)
        return "outreach run stopped (terminated)"

    async def _frames(self, reader: HL7StreamReader) -> AsyncIterator[str]:
        """The text of each framed message, in order; what is not a frame is dropped (logged by size only)."""
        while True:
            try:
                block = await reader.readuntil(_SEPARATOR)
            except asyncio.IncompleteReadError as err:
                if err.partial.strip():
                    log.warning("adt.frame_truncated", bytes=len(err.partial))
                return
            except asyncio.LimitOverrunError as err:
                log.warning("adt.frame_too_large", limit=FRAME_LIMIT)
                head = b""
                with contextlib.suppress(Exception):
                    head = await reader.readexactly(err.consumed)  # drop what was buffered and read on
                # Answer it (AR) from its MSH, so an original-mode sender does not wait for an ACK forever;
                # the rest of the frame, when it comes, has no start block and is dropped.
                start = head.find(START_BLOCK + b"MSH")
                if start >= 0:
                    yield _TOO_LARGE + head[start + 1:].split(b"\r", 1)[0].decode("utf-8", "replace")
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
                ack = await (self.too_large(text.removeprefix(_TOO_LARGE)) if text.startswith(_TOO_LARGE)
                             else self.handle(text))
                writer.writeblock(ack.encode("utf-8"))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            log.info("adt.disconnected", peer=str(peer))


async def serve_adt(settings: Settings, client: Client, store: SqlCareRecordStore, *,
                    host: str | None = None, port: int | None = None) -> asyncio.Server:
    """Start listening (``server.close()`` stops it); port 0 picks a free one (``server.sockets[0]``)."""
    listener = AdtListener(settings, client, store)
    server = await start_hl7_server(listener.connection, host or settings.adt_host,
                                    settings.adt_port if port is None else port, limit=FRAME_LIMIT)
    log.info("adt.listening", bind=str(server.sockets[0].getsockname()))
    return server
