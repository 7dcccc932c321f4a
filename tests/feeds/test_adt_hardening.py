"""The ADT listener under attack, over real sockets (plain and TLS), against the real dev server and worker."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import hl7
import pytest
import pytest_asyncio
from structlog.testing import capture_logs
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from feeds.adt_listener import serve_adt
from runtime.errors import ConfigurationError
from runtime.settings import Settings
from store.connect import configured_database
from store.ledger import DecisionLedger
from store.sql_records import SqlCareRecordStore
from tests.conftest import ALWAYS_ASK, StartRun, wait_for_status
from tests.feeds.hl7_messages import adt, frame
from tests.feeds.test_adt_listener import _closed_status
from tests.feeds.tls_certs import Pki, make_pki
from tests.fhir_factory import HIGH_RISK, make_member
from workflows.outreach_client import outreach_workflow_id

Serve = Callable[..., Awaitable[tuple[str, int, Settings]]]


@pytest_asyncio.fixture
async def serve(client: Client, settings: Settings, store: SqlCareRecordStore,
                task_queue: str) -> AsyncIterator[Serve]:
    """Start listeners with settings overrides on this test's worker; closed (and their runs ended) after."""
    servers: list[asyncio.Server] = []

    async def start(**overrides: object) -> tuple[str, int, Settings]:
        ours = settings.model_copy(update={"task_queue": task_queue, **overrides})
        server = await serve_adt(ours, client, store, host="127.0.0.1", port=0)
        servers.append(server)
        host, port = server.sockets[0].getsockname()[:2]
        return host, port, ours

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()
    async for execution in client.list_workflows(f"TaskQueue = '{task_queue}' AND ExecutionStatus = 'Running'"):
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(execution.id).terminate("test finished")


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, message: str,
                    timeout: float = 30) -> hl7.Message:
    writer.write(frame(message))
    await writer.drain()
    block = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), timeout)
    return hl7.parse(block[1:-2].decode())


async def _send(host: str, port: int, message: str, *, tls: ssl.SSLContext | None = None,
                timeout: float = 30) -> hl7.Message:
    reader, writer = await asyncio.open_connection(host, port, ssl=tls,
                                                   server_hostname="localhost" if tls else None)
    try:
        return await _exchange(reader, writer, message, timeout)
    finally:
        writer.close()


def _ack(message: hl7.Message) -> tuple[str, str]:
    return str(message.extract_field("MSA", 1, 1)), message.unescape(str(message.extract_field("MSA", 1, 3)))


def _member(store: SqlCareRecordStore) -> tuple[str, str]:
    return make_member(store).member_id, f"visit-{uuid.uuid4().hex[:10]}"


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def _closed_by_server(reader: asyncio.StreamReader, wait: float = 2.0) -> bool:
    """Whether the server has closed this connection (EOF or reset) within ``wait`` seconds."""
    try:
        return b"" == await asyncio.wait_for(reader.read(1), wait)
    except (ConnectionError, ssl.SSLError):
        return True
    except TimeoutError:
        return False


async def _open_many(host: str, port: int, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    opened = []
    for start in range(0, count, 50):  # in batches: never more than the accept backlog in flight
        opened += await asyncio.gather(*(asyncio.open_connection(host, port)
                                         for _ in range(start, min(count, start + 50))))
    return opened


async def test_idle_connections_are_capped_and_a_good_message_is_answered_within_a_second(
        store, serve: Serve) -> None:
    """200 idle connections: the listener keeps at most adt_max_connections (the least recently active are
    closed), and a sender that connects afterwards is answered AA within 1 s."""
    host, port, settings = await serve()
    idle = await _open_many(host, port, 200)
    await asyncio.sleep(0.2)  # every connection accepted
    began = time.perf_counter()
    answer = await _send(host, port, adt("A03", *_member(store)))
    latency = time.perf_counter() - began
    closed = await asyncio.gather(*(_closed_by_server(reader, 0.5) for reader, _ in idle))
    for _, writer in idle:
        writer.close()

    assert "AA" == _ack(answer)[0]
    assert latency < 1.0, f"good message answered in {latency:.2f}s"
    assert 64 == settings.adt_max_connections
    # 201 connections for 64 places: the 137 least recently active were closed by the listener.
    assert 201 - 64 == sum(closed)


async def test_an_idle_connection_is_closed_after_the_idle_timeout(serve: Serve) -> None:
    host, port, _ = await serve(adt_idle_timeout_seconds=0.5)
    reader, writer = await asyncio.open_connection(host, port)
    assert await _closed_by_server(reader, 3.0)
    writer.close()


async def test_a_trickled_frame_is_closed_after_the_frame_timeout(serve: Serve) -> None:
    """A frame that keeps the connection busy with one byte at a time still has to end in time."""
    host, port, _ = await serve(adt_frame_timeout_seconds=1.0, adt_idle_timeout_seconds=5.0)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"\x0bMSH|^~\\&|")
    began = time.perf_counter()
    with contextlib.suppress(ConnectionError):
        for _ in range(40):
            writer.write(b"x")
            await writer.drain()
            if reader.at_eof():
                break
            await asyncio.sleep(0.1)
    assert await _closed_by_server(reader, 3.0)
    assert time.perf_counter() - began < 3.0
    writer.close()


async def test_partial_frames_hold_bounded_memory_and_a_good_message_still_goes_through(
        store, serve: Serve) -> None:
    """200 connections each send just under 1 MiB of a frame and never its end: the process's RSS grows by
    at most about adt_max_connections frames, not 200, and a good message is answered within 1 s."""
    host, port, settings = await serve()
    payload = b"\x0b" + adt("A03", "pt-x", "visit-x").encode() + b"NTE|1||" + b"x" * (settings.adt_frame_limit_bytes
                                                                                      - 1024)
    assert len(payload) < settings.adt_frame_limit_bytes
    before = _rss_bytes()
    connections = []
    for _ in range(200):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(payload)
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(writer.drain(), 10)
        connections.append((reader, writer))
    await asyncio.sleep(0.5)  # the listener has read what it kept
    grown = _rss_bytes() - before
    began = time.perf_counter()
    answer = await _send(host, port, adt("A01", *_member(store)))
    latency = time.perf_counter() - began
    for _, writer in connections:
        writer.close()

    held_at_most = settings.adt_max_connections * (settings.adt_frame_limit_bytes + (128 << 10))
    assert grown < held_at_most + (16 << 20), f"RSS grew {grown >> 20} MiB for 200 partial 1 MiB frames"
    assert ("AA", "") == _ack(answer)
    assert latency < 1.0, f"good message answered in {latency:.2f}s"


async def test_an_oversized_frame_is_answered_ar_without_being_held(store, serve: Serve) -> None:
    """A frame over the limit is answered AR from its MSH as soon as it passes the limit; the connection goes on."""
    host, port, settings = await serve(adt_frame_limit_bytes=64 * 1024)
    big = adt("A03", *_member(store), control_id="ctl-big") + "NTE|1||" + "x" * (256 * 1024) + "\r"
    reader, writer = await asyncio.open_connection(host, port)
    try:
        too_large = await _exchange(reader, writer, big)
        good = await _exchange(reader, writer, adt("A03", *_member(store)))
    finally:
        writer.close()
    assert ("AR", "the message is larger than 65536 bytes; nothing was stored") == _ack(too_large)
    assert "ctl-big" == str(too_large.extract_field("MSA", 1, 2))
    assert "AA" == _ack(good)[0]


class _LoopLag:
    """The event loop's worst stall while it runs: how late a 10 ms sleep wakes up."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task = asyncio.create_task(self._probe())

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, loop.time() - before - 0.01)

    def stop(self) -> float:
        self._task.cancel()
        return self.worst


async def test_huge_messages_do_not_delay_a_good_one_on_another_connection(store, serve: Serve) -> None:
    """Three messages of 40,000 NTE segments (about 920 kB each) on three connections are parsed off the event
    loop and in linear time: the loop never stalls, a good A01 sent meanwhile is answered within 1 s, and the
    huge ones soon after."""
    host, port, _ = await serve()
    people = [_member(store) for _ in range(3)]
    notes = "".join(f"NTE|{i}||comment {i:06d}\r" for i in range(40_000))
    lag = _LoopLag()
    began = time.perf_counter()
    connections = [await asyncio.open_connection(host, port) for _ in people]
    for (_, writer), (member_id, visit) in zip(connections, people, strict=True):
        writer.write(frame(adt("A03", member_id, visit) + notes))
        await writer.drain()
    good_message = adt("A01", *_member(store))

    def good_sender() -> tuple[hl7.Message, float]:
        """A sender with its own thread and loop: its wait is measured even while the listener's loop stalls."""
        time.sleep(0.3)  # the huge ones are in the listener's hands
        good_began = time.perf_counter()
        answer = asyncio.run(_send(host, port, good_message))
        return answer, time.perf_counter() - good_began

    good, good_latency = await asyncio.to_thread(good_sender)
    huge_acks = [hl7.parse((await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 30))[1:-2].decode())
                 for reader, _ in connections]
    worst_stall = lag.stop()
    for _, writer in connections:
        writer.close()
    assert "AA" == _ack(good)[0]
    assert good_latency < 1.0, f"good A01 answered after {good_latency:.2f}s"
    # Measured 0.07-0.11 s on the shared 2-core machine (the worker's own work included); 9-13 s before.
    assert worst_stall < 0.5, f"the event loop stalled {worst_stall:.2f}s"
    assert ["AA"] * 3 == [_ack(a)[0] for a in huge_acks]
    assert time.perf_counter() - began < 10.0
    assert ["finished"] * 3 == [store.get("Encounter", v)["status"] for _, v in people]


async def test_a_message_with_a_second_msh_is_refused(client: Client, store, serve: Serve) -> None:
    """A harmless A08 with an A13 smuggled after it in the same frame: AR naming the second MSH, and nothing of
    either is applied (the run started by the A03 goes on)."""
    host, port, settings = await serve()
    member_id, visit = _member(store)
    assert "AA" == _ack(await _send(host, port, adt("A03", member_id, visit)))[0]
    smuggled = adt("A08", member_id, visit, control_id="ctl-outer") + adt("A13", member_id, visit)
    answer = await _send(host, port, smuggled)
    code, reason = _ack(answer)
    assert ("AR", "ctl-outer") == (code, str(answer.extract_field("MSA", 1, 2)))
    assert "the frame holds 2 MSH segments; send one message per MLLP frame" in reason
    assert "ERR||MSH^1|100^Segment sequence error^HL70357|E" == str(answer.segment("ERR"))
    assert "finished" == store.get("Encounter", visit)["status"]
    workflow_id = outreach_workflow_id(member_id, visit, settings.pseudonym_salt.get_secret_value())
    assert WorkflowExecutionStatus.RUNNING == (await client.get_workflow_handle(workflow_id).describe()).status


async def test_a_sending_facility_outside_the_allow_list_is_refused_without_phi_in_the_log(
        store, serve: Serve) -> None:
    host, port, _ = await serve(adt_allowed_facilities=["OTHER_HOSPITAL", "HOSP_ADT^THIRD_HOSPITAL"])
    member_id, visit = _member(store)
    with capture_logs() as logs:
        answer = await _send(host, port, adt("A03", member_id, visit))
    code, reason = _ack(answer)
    assert "AR" == code
    assert reason.startswith("MSH-4 sending facility 'GENERAL_HOSPITAL' (MSH-3 'HOSP_ADT') is not allowed")
    assert "ERR||MSH^1^4|207^Application internal error^HL70357|E" == str(answer.segment("ERR"))
    assert store.get("Encounter", visit) is None
    refused = [e for e in logs if e["event"] == "adt.sender_refused"]
    assert [("GENERAL_HOSPITAL", "A03")] == [(e["sending_facility"], e["hl7_event"]) for e in refused]
    assert not any(member_id in str(e) or "Synthetic" in str(e) for e in logs)


async def test_a_facility_on_the_allow_list_is_accepted(store, serve: Serve) -> None:
    host, port, _ = await serve(adt_allowed_facilities=["OTHER_HOSPITAL", "HOSP_ADT^GENERAL_HOSPITAL"])
    assert "AA" == _ack(await _send(host, port, adt("A03", *_member(store))))[0]


async def test_a_source_address_outside_the_allow_list_is_closed_before_it_is_read(store, serve: Serve) -> None:
    host, port, _ = await serve(adt_allowed_sources=["10.0.0.0/8", "192.0.2.7"])
    with capture_logs() as logs:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(frame(adt("A03", *_member(store))))
        assert await _closed_by_server(reader)
        writer.close()
    assert [("127.0.0.1", "source not in CARELOOM_ADT_ALLOWED_SOURCES")] == [
        (e["peer"], e["reason"]) for e in logs if e["event"] == "adt.connection_refused"]
    host, port, _ = await serve(adt_allowed_sources=["127.0.0.0/8"])
    assert "AA" == _ack(await _send(host, port, adt("A03", *_member(store))))[0]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("adt-pki"))


def _client_tls(pki: Pki, *, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


async def _refused_over_tls(host: str, port: int, message: str, context: ssl.SSLContext | None) -> bool:
    """Whether the listener refuses this client: the handshake fails or the connection ends with no ACK."""
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=context,
                                                       server_hostname="localhost" if context else None)
    except (ssl.SSLError, ConnectionError):
        return True
    try:
        writer.write(frame(message))
        await writer.drain()
        return b"" == await asyncio.wait_for(reader.read(), 5)
    except (ssl.SSLError, ConnectionError):
        return True
    finally:
        writer.close()


async def test_mllp_over_tls_with_client_certificates(store, serve: Serve, pki: Pki) -> None:
    """With a client CA: a sender with a certificate from it is answered; one without a certificate, with a
    certificate from another CA, or in plain text is refused."""
    host, port, _ = await serve(adt_tls_cert_file=pki.server_cert, adt_tls_key_file=pki.server_key,
                                adt_tls_client_ca_file=pki.ca)
    trusted = _client_tls(pki, cert=(pki.client_cert, pki.client_key))
    assert "AA" == _ack(await _send(host, port, adt("A03", *_member(store)), tls=trusted))[0]
    for refused in (_client_tls(pki, cert=None), _client_tls(pki, cert=(pki.rogue_cert, pki.rogue_key)), None):
        member_id, visit = _member(store)
        assert await _refused_over_tls(host, port, adt("A03", member_id, visit), refused)
        assert store.get("Encounter", visit) is None


async def test_mllp_over_tls_without_client_certificates(store, serve: Serve, pki: Pki) -> None:
    host, port, _ = await serve(adt_tls_cert_file=pki.server_cert, adt_tls_key_file=pki.server_key)
    assert "AA" == _ack(await _send(host, port, adt("A03", *_member(store)), tls=_client_tls(pki, cert=None)))[0]
    member_id, visit = _member(store)
    assert await _refused_over_tls(host, port, adt("A03", member_id, visit), None)  # plain text to a TLS port
    assert store.get("Encounter", visit) is None


@pytest.mark.parametrize(("overrides", "names"), [
    ({"adt_tls_cert_file": Path("/nonexistent/server.crt")}, "set both CARELOOM_ADT_TLS_CERT_FILE and"),
    ({"adt_tls_client_ca_file": Path("/nonexistent/ca.pem")}, "CARELOOM_ADT_TLS_CLIENT_CA_FILE needs TLS"),
    ({"adt_allowed_sources": ["10.0.0.0/33"]}, "CARELOOM_ADT_ALLOWED_SOURCES: '10.0.0.0/33' is not an address"),
    ({"adt_allowed_facilities": ["A^B^C"]}, "CARELOOM_ADT_ALLOWED_FACILITIES: 'A^B^C' is not FACILITY"),
])
async def test_bad_access_settings_fail_at_start_naming_the_setting(serve: Serve, overrides, names: str) -> None:
    with pytest.raises(ConfigurationError, match=names.replace("^", r"\^").replace(".", r"\.")):
        await serve(**overrides)


async def test_bad_tls_files_fail_at_start(serve: Serve, tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="CARELOOM_ADT_TLS_CERT_FILE/CARELOOM_ADT_TLS_KEY_FILE could not"):
        await serve(adt_tls_cert_file=tmp_path / "bad.pem", adt_tls_key_file=tmp_path / "bad.pem")


async def test_production_refuses_an_exposed_listener(client: Client, settings: Settings, store) -> None:
    """In production a listener on a non-loopback address needs mutual TLS and both allow-lists."""
    production = settings.model_copy(update={"environment": "production"})
    with pytest.raises(ConfigurationError) as refused:
        await serve_adt(production, client, store, host="0.0.0.0", port=0)  # noqa: S104 - never bound: refused
    for needed in ("mutual TLS", "CARELOOM_ADT_ALLOWED_SOURCES", "CARELOOM_ADT_ALLOWED_FACILITIES"):
        assert needed in str(refused.value)


async def test_a_cancel_on_a_parked_run_keeps_its_approval_on_record(
        client: Client, store, serve: Serve, start_run: StartRun, settings: Settings) -> None:
    """An A13 for a run waiting for approval never terminates it: the run is withdrawn, each pending approval
    gets a ``withdrawn`` ledger entry naming the sending facility and the event, and an A03 after it does not
    start a new run for the episode."""
    host, port, _ = await serve()
    member = make_member(store, **HIGH_RISK)
    handle = await start_run(member, policy=ALWAYS_ASK)
    pending = (await wait_for_status(handle, lambda s: len(s.pending_approvals) > 0)).pending_approvals
    answer = await _send(host, port, adt("A13", member.member_id, member.encounter_id, control_id="ctl-a13-p"))
    code, reason = _ack(answer)
    assert ("AA", "outreach run withdrawn") == (code, reason)
    assert WorkflowExecutionStatus.COMPLETED == await _closed_status(client, handle.id)
    assert "withdrawn" == (await handle.result()).status
    withdrawn = [e for e in DecisionLedger(configured_database(settings)).entries(handle.id) if e.event == "withdrawn"]
    assert {p.approval_id for p in pending} <= {e.approval_id for e in withdrawn}
    for entry in withdrawn:
        assert "adt:GENERAL_HOSPITAL" == entry.actor
        assert "ADT^A13 (cancel discharge), MSH-10 ctl-a13-p" in (entry.reason or "")
    again = await _send(host, port, adt("A03", member.member_id, member.encounter_id))
    assert ("AA", "outreach run already exists") == _ack(again)
    assert 1 == len([e async for e in client.list_workflows(f"WorkflowId = '{handle.id}'")])
