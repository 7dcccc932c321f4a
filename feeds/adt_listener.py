"""The ADT listener: an HL7 v2 MLLP server (``hl7.mllp``) that turns discharges into outreach runs.

For each framed message, in order on its connection (original-mode
acknowledgement: the sender waits for the ACK before the next message):

1. parse and check it (:mod:`feeds.adt`);
2. apply it to the Encounter in the records store (validated FHIR R4);
3. A03: start the discharge's outreach run and wait until Temporal has it
   durably (``start_discharges``, idempotent by the run's business key: a
   resent message starts nothing), unless :mod:`feeds.screening` holds it
   back (discharged before the lookback, an implausible stay, a deceased
   member's earlier stay, coverage ended since): then AA with the reason in
   MSA-3, logged as ``adt.discharge_held``; A13 and A11: withdraw the episode's run
   if one is running (see :meth:`AdtListener._withdraw`: never terminate);
4. only then answer: AA, or AE (fix the data or retry later, e.g. Temporal
   unavailable) / AR (never resend as is) with the reason in MSA-3.

Connections, framing, timeouts, TLS and source addresses are
:mod:`feeds.mllp_server`'s; parsing runs in a small thread pool, so a large
message never stalls the event loop (and other connections) while it is
parsed. A sending facility outside the allow-list is answered AR. Nothing
raised by one message reaches the server: the connection goes on. Logs carry
the event, control id, ACK code and sending facility, never PHI.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import hl7
import structlog
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from feeds.adt import AdtEvent, AdtRefused, apply_event, event_label, parse_adt, sender_of
from feeds.discharges import discharge_of, start_discharges
from feeds.mllp_access import AdtAccess, check_exposure, server_tls_context
from feeds.mllp_framing import Frame
from feeds.mllp_server import MllpLimits, MllpServer
from feeds.screening import ScreenRules, screen
from guardrails.configured import outreach_policy
from runtime.metrics import ADT_LATENCY, ADT_MESSAGES
from runtime.settings import Settings
from store.fhir_validation import InvalidResource, validate_resource
from store.sql_records import SqlCareRecordStore
from workflows.agent_run import WithdrawRequest
from workflows.outreach_client import outreach_workflow_id

__all__ = ["AdtListener", "serve_adt"]

log = structlog.get_logger(__name__)

_WITHDRAW_SECONDS = 20.0  # under a sender's usual 30 s ACK timeout: an AE it can act on, not a silent hang
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

    def __init__(self, settings: Settings, client: Client, store: SqlCareRecordStore, *,
                 access: AdtAccess | None = None) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.policy = outreach_policy(settings)
        self.screen_rules = ScreenRules.from_settings(settings, policy=self.policy)
        self.access = access or AdtAccess.from_settings(settings)
        self._parser = _parse_pool(settings.adt_parse_threads)
        # One message at a time per visit, across connections: an A13 never overtakes its A03's start.
        self._visits: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def handle(self, text: str) -> str:
        """The ACK for one message, after its effects are durable."""
        began = time.perf_counter()
        message: hl7.Message | None = None
        error: str | None = None
        location: tuple[str, int | None] | None = None
        try:
            message, event = await asyncio.get_running_loop().run_in_executor(
                self._parser, functools.partial(parse_adt, text, time_zone=self.settings.plan_time_zone))
            self._check_sender(message)
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

    async def on_frame(self, frame: Frame) -> bytes:
        """The ACK for one frame from :class:`~feeds.mllp_server.MllpServer`."""
        if frame.kind == "too_large":
            msh = frame.data.split(b"\r", 1)[0].decode("utf-8", "replace")
            return (await self.too_large(msh)).encode("utf-8")
        return (await self.handle(frame.data.decode("utf-8", "replace"))).encode("utf-8")

    def _check_sender(self, message: hl7.Message) -> None:
        application, facility = sender_of(message)
        if self.access.facility_allowed(application, facility):
            return
        log.warning("adt.sender_refused", sending_application=application[:64], sending_facility=facility[:64],
                    hl7_event=event_label(message))
        raise AdtRefused("AR", f"MSH-4 sending facility {facility[:64] or '(empty)'!r} (MSH-3 {application[:64]!r})"
                               " is not allowed on this listener; ask the plan to add it to "
                               "CARELOOM_ADT_ALLOWED_FACILITIES", message, error="207", location=("MSH", 4))

    async def too_large(self, msh: str) -> str:
        """The AR for a message over the frame limit, answered from its MSH segment alone."""
        reason = f"the message is larger than {self.settings.adt_frame_limit_bytes} bytes; nothing was stored"
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
            return "AA", await self._withdraw(event)
        return "AA", None

    async def _start(self, encounter: dict) -> tuple[str, str | None]:
        discharge = discharge_of(encounter, self.policy, self.settings.plan_time_zone)
        if discharge is None:
            return "AA", "not an inpatient discharge: no outreach run"
        screened = await asyncio.to_thread(screen, self.store, [discharge], self.screen_rules,
                                           now=datetime.now(UTC))
        if screened.held:
            [held] = screened.held
            # The message is applied and kept (AA: resending changes nothing); only the run is not started.
            log.info("adt.discharge_held", reason=held.reason)
            return "AA", f"stored; no outreach started: {held.detail}"
        report = await start_discharges(self.client, self.settings, [discharge], trigger="adt", policy=self.policy)
        if report.failed:
            raise _Unavailable("the outreach run could not be started")
        if report.tcm_missed:
            return "AA", "outreach started; the TCM contact window has already passed (tcm_missed)"
        return "AA", None if report.started else "outreach run already exists"

    async def _withdraw(self, event: AdtEvent) -> str | None:
        """Withdraw the episode's outreach run if one is running; the reason for the ACK.

        Withdrawn, never terminated: a terminated run drops its pending approvals without a trace (no ledger
        entry, the approver's item gone), and anyone who can reach the port can send an A13. The run's
        ``withdraw`` update records a ``withdrawn`` ledger entry for each pending approval naming the sending
        facility and the event, executes nothing further and ends ``withdrawn``. Not cancel either: the
        outreach workflow turns a cancelled activity into a tool failure and goes on.
        """
        workflow_id = outreach_workflow_id(event.member_id, event.encounter_id,
                                           self.settings.pseudonym_salt.get_secret_value())
        handle = self.client.get_workflow_handle(workflow_id)
        try:
            described = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return "no outreach run to withdraw"
            raise _Unavailable("the outreach run could not be looked up") from None
        except Exception:  # noqa: BLE001 - e.g. a client that cannot connect
            raise _Unavailable("the outreach run could not be looked up") from None
        if described.status != WorkflowExecutionStatus.RUNNING:
            return "the outreach run had already ended"
        what = "cancel discharge" if event.event == "A13" else "cancel admit"
        request = WithdrawRequest(actor=f"adt:{event.facility or 'unknown'}", source=event.facility or None,
                                  reason=f"ADT^{event.event} ({what}), MSH-10 {event.control_id}: the episode is "
                                         "no longer a discharge")
        try:
            await asyncio.wait_for(handle.execute_update("withdraw", request), _WITHDRAW_SECONDS)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:  # it closed in between
                return "the outreach run had already ended"
            raise _Unavailable("the outreach run could not be withdrawn") from None
        except TimeoutError:
            raise _Unavailable("the outreach run did not answer the withdrawal (no worker?)") from None
        except Exception as err:  # noqa: BLE001 - the run refused (e.g. a worker without the update): never AA
            log.error("adt.withdraw_failed", hl7_event=event.event, control_id=event.control_id,
                      error=type(err).__name__)
            raise AdtRefused("AE", f"the outreach run could not be withdrawn ({type(err).__name__}); it is still "
                                   "running: resend once the workers are upgraded, or withdraw it in careloom",
                             error="207") from None
        log.info("adt.run_withdrawn", hl7_event=event.event, control_id=event.control_id,
                 sending_facility=event.facility[:64])
        return "outreach run withdrawn"


@functools.lru_cache(maxsize=None)
def _parse_pool(threads: int) -> ThreadPoolExecutor:
    """One parse pool per size per process, shared by listeners (tests start many), never torn down.

    Bounded twice: ``threads`` parse at once, and each connection waits for its message's ACK before
    reading the next, so at most ``adt_max_connections`` parses are queued.
    """
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="adt-parse")


async def serve_adt(settings: Settings, client: Client, store: SqlCareRecordStore, *,
                    host: str | None = None, port: int | None = None) -> asyncio.Server:
    """Start listening (``server.close()`` stops it); port 0 picks a free one (``server.sockets[0]``).

    Raises :class:`~runtime.errors.ConfigurationError` for a bad TLS file or allow-list entry, and in
    production for a listener that anyone who reaches it could feed (docs/adt-listener.md, "Exposure").
    """
    bind = host or settings.adt_host
    tls, access = server_tls_context(settings), AdtAccess.from_settings(settings)
    check_exposure(settings, bind, tls, access)
    listener = AdtListener(settings, client, store, access=access)
    mllp = MllpServer(listener.on_frame, MllpLimits.from_settings(settings), access=access, tls=tls)
    server = await mllp.start(bind, settings.adt_port if port is None else port)
    log.info("adt.listening", bind=str(server.sockets[0].getsockname()), tls=tls is not None,
             client_certificates=tls is not None and tls.verify_mode.name == "CERT_REQUIRED",
             allowed_sources=len(access.sources), allowed_facilities=len(access.facilities))
    return server
