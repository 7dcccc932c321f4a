"""An MLLP server that a sender cannot exhaust: connection cap, idle and frame timeouts, bounded frames, TLS,
source allow-list.

Each limit answers a measured attack on the plain server (docs/adt-listener.md, "Limits"):

* **connections**: at most ``max_connections``; a new one beyond it closes the least recently active
  connection that is not handling a message (an idle feed reconnects when it next has a message; a
  half-sent frame was never ACKed, so its sender resends), or is itself closed when all are busy;
* **time**: a connection silent for ``idle_timeout`` is closed, and a frame (or TLS handshake) must complete
  within ``frame_timeout`` of its start, so a trickle of bytes cannot hold a frame open;
* **memory**: a frame in progress holds at most ``frame_limit`` bytes (:class:`~feeds.mllp_framing.MllpFramer`)
  and the socket reader at most two read chunks, so the listener holds at most about
  ``max_connections * (frame_limit + 128 KiB)`` of frames;
* **who**: a source address outside the allow-list is closed before any byte is read or any TLS work done.

Checks that need no I/O run in ``connection_made``, before the connection costs anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from feeds.mllp_access import AdtAccess
from feeds.mllp_framing import END_BLOCK, START_BLOCK, Frame, MllpFramer
from runtime.settings import Settings

__all__ = ["MllpLimits", "MllpServer"]

log = structlog.get_logger(__name__)

_CHUNK = 64 * 1024  # one socket read; the reader pauses the socket above two of them
FrameHandler = Callable[[Frame], Awaitable[bytes]]


@dataclass(frozen=True)
class MllpLimits:
    max_connections: int = 64
    idle_timeout: float = 300.0
    frame_timeout: float = 30.0
    frame_limit: int = 1 << 20

    @classmethod
    def from_settings(cls, settings: Settings) -> MllpLimits:
        return cls(settings.adt_max_connections, settings.adt_idle_timeout_seconds,
                   settings.adt_frame_timeout_seconds, settings.adt_frame_limit_bytes)


class _Connection:
    __slots__ = ("busy", "last_active", "peer", "transport")

    def __init__(self, transport: asyncio.BaseTransport, peer: str, now: float) -> None:
        self.transport, self.peer, self.last_active, self.busy = transport, peer, now, False


class _GuardedProtocol(asyncio.StreamReaderProtocol):
    """A stream protocol that asks the server before the connection is set up."""

    def __init__(self, server: MllpServer, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(asyncio.StreamReader(limit=_CHUNK, loop=loop), self._connected, loop=loop)
        self._server = server
        self._conn: _Connection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._conn = self._server.admit(transport)
        if self._conn is None:
            transport.abort()
            return
        if self._server.tls is not None:
            # The ClientHello must reach start_tls, not the plain reader's buffer.
            transport.pause_reading()  # type: ignore[attr-defined]
        super().connection_made(transport)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._conn is not None  # noqa: S101 - set in connection_made before this is scheduled
        await self._server.serve(self._conn, reader, writer)


class MllpServer:
    """Calls ``handler`` for each frame, one at a time per connection, and writes back the ACK it returns."""

    def __init__(self, handler: FrameHandler, limits: MllpLimits, *, access: AdtAccess | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.limits = limits
        self.access = access or AdtAccess()
        self.tls = tls
        self._connections: dict[_Connection, None] = {}

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def start(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: _GuardedProtocol(self, loop), host, port)

    def admit(self, transport: asyncio.BaseTransport) -> _Connection | None:
        """The new connection's record, or None to close it (source refused, or every slot busy)."""
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) else None
        if not self.access.source_allowed(host):
            log.warning("adt.connection_refused", peer=str(host), reason="source not in CARELOOM_ADT_ALLOWED_SOURCES")
            return None
        now = asyncio.get_running_loop().time()
        if len(self._connections) >= self.limits.max_connections:
            idle = [c for c in self._connections if not c.busy]
            if not idle:
                log.warning("adt.connection_refused", peer=str(host), reason="every connection is busy",
                            max_connections=self.limits.max_connections)
                return None
            victim = min(idle, key=lambda c: c.last_active)
            del self._connections[victim]
            victim.transport.abort()
            log.warning("adt.connection_evicted", peer=victim.peer, idle_seconds=round(now - victim.last_active, 1),
                        max_connections=self.limits.max_connections)
        conn = _Connection(transport, str(host), now)
        self._connections[conn] = None
        return conn

    async def serve(self, conn: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        log.info("adt.connected", peer=conn.peer)
        framer = MllpFramer(self.limits.frame_limit)
        reason = "closed by the sender"
        try:
            if self.tls is not None:
                try:
                    await writer.start_tls(self.tls, ssl_handshake_timeout=self.limits.frame_timeout)
                except (ssl.SSLError, OSError, TimeoutError) as err:
                    reason = f"TLS handshake failed ({type(err).__name__})"
                    return
                conn.transport = writer.transport
            frame_began = loop.time()
            while True:
                timeout = self.limits.idle_timeout
                if framer.in_frame:
                    timeout = min(timeout, frame_began + self.limits.frame_timeout - loop.time())
                try:
                    data = await asyncio.wait_for(reader.read(_CHUNK), max(timeout, 0.0))
                except TimeoutError:
                    reason = "frame timeout" if framer.in_frame else "idle timeout"
                    return
                if not data:
                    if framer.in_frame:
                        log.warning("adt.frame_truncated", peer=conn.peer, bytes=framer.buffered)
                    return
                conn.last_active = loop.time()
                was_in_frame, dropped = framer.in_frame, framer.dropped
                frames = framer.feed(data)
                if framer.in_frame and (frames or not was_in_frame):
                    frame_began = conn.last_active
                if framer.dropped > dropped and not framer.in_frame:
                    log.warning("adt.bytes_dropped", peer=conn.peer, bytes=framer.dropped - dropped)
                for frame in frames:
                    conn.busy = True
                    try:
                        ack = await self.handler(frame)
                    finally:
                        conn.busy = False
                    writer.write(START_BLOCK + ack + END_BLOCK + b"\r")
                    # A sender that never reads its ACKs must not hold the connection forever either.
                    await asyncio.wait_for(writer.drain(), self.limits.idle_timeout)
                    conn.last_active = loop.time()
        except (ConnectionError, TimeoutError, asyncio.CancelledError) as err:
            reason = type(err).__name__
        finally:
            self._connections.pop(conn, None)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)
            log.info("adt.disconnected", peer=conn.peer, reason=reason)
