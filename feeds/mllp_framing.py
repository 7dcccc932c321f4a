"""MLLP framing with a bounded buffer: bytes in, complete frames (or "too large" notices) out.

Linear in the bytes received (each byte is searched a constant number of times) and never holding more
than ``limit`` bytes of a frame in progress: a frame that grows past it is reported once, with its first
bytes (enough for the MSH the AR is built from), and the rest of it is counted and dropped as it arrives.
Pure and synchronous, so it is tested without sockets and cannot block the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["END_BLOCK", "START_BLOCK", "Frame", "MllpFramer"]

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
_END = b"\x1c\r"
_HEAD = 4096  # what is kept of an oversized frame: its MSH segment, for the AR's MSA-2


@dataclass(frozen=True)
class Frame:
    """A complete frame's body (``kind="message"``) or the head of one over the limit (``"too_large"``)."""

    kind: Literal["message", "too_large"]
    data: bytes


class MllpFramer:
    """Splits an MLLP byte stream into frames ``<VT> body <FS><CR>``.

    Bytes outside a frame are dropped (counted in ``dropped``); a start block inside a frame starts the frame
    again (the sender gave up on a truncated one and resent), as a lenient receiver should.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = 0
        self._state: Literal["outside", "inside", "discarding"] = "outside"
        self._parts: list[bytes] = []  # chunks, not one growing bytearray: no over-allocation, freed piecewise
        self._size = 0
        self._pending_fs = False  # the last byte taken was <FS>: a <CR> at the start of the next chunk ends it

    @property
    def in_frame(self) -> bool:
        """A frame has begun and not ended (the frame timeout applies)."""
        return self._state != "outside"

    @property
    def buffered(self) -> int:
        return self._size

    def feed(self, data: bytes) -> list[Frame]:
        """The frames that ``data`` completes (and notices of frames over the limit), in order."""
        out: list[Frame] = []
        pos, size = 0, len(data)
        while pos < size:
            if self._state == "outside":
                start = data.find(START_BLOCK, pos)
                if start < 0:
                    self.dropped += size - pos
                    return out
                self.dropped += start - pos
                self._begin()
                pos = start + 1
                continue
            if self._pending_fs and data[pos:pos + 1] == b"\r":
                self._finish(out, trim=1)  # the <FS> taken with the last chunk was the end block
                pos += 1
                continue
            end = data.find(_END, pos)
            stop = size if end < 0 else end
            restart = data.find(START_BLOCK, pos, stop)
            if restart >= 0:
                self.dropped += self._size + restart - pos
                self._begin()
                pos = restart + 1
                continue
            self._take(data[pos:stop], out)
            if end < 0:
                self._pending_fs = data.endswith(END_BLOCK)
                return out
            self._finish(out, trim=0)
            pos = end + len(_END)
        return out

    def _begin(self) -> None:
        self._state, self._parts, self._size, self._pending_fs = "inside", [], 0, False

    def _take(self, piece: bytes, out: list[Frame]) -> None:
        if self._state == "discarding":
            self.dropped += len(piece)
            return
        if self._size + len(piece) > self.limit:
            head = b"".join(self._parts)[:_HEAD]
            head += piece[:max(0, _HEAD - len(head))]
            out.append(Frame("too_large", head))
            self.dropped += self._size + len(piece)
            self._state, self._parts, self._size = "discarding", [], 0
            return
        if piece:
            self._parts.append(piece)
            self._size += len(piece)

    def _finish(self, out: list[Frame], *, trim: int) -> None:
        if self._state == "inside":
            body = b"".join(self._parts)
            out.append(Frame("message", body[:len(body) - trim] if trim else body))
        self._state, self._parts, self._size, self._pending_fs = "outside", [], 0, False
