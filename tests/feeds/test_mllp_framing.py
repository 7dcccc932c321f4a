"""The MLLP framer on its own: frames across any chunking, garbage, restarts and the size limit."""

from __future__ import annotations

import time

import pytest

from feeds.mllp_framing import Frame, MllpFramer

STREAM = (b"junk\x1c\r" + b"\x0bMSH|first\rPID|1\x1c\r" + b"noise" + b"\x0bMSH|trunc" + b"\x0bMSH|second\x1c\x1cx\x1c\r")
EXPECTED = [Frame("message", b"MSH|first\rPID|1"), Frame("message", b"MSH|second\x1c\x1cx")]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(STREAM)])
def test_frames_are_the_same_however_the_bytes_are_chunked(size: int) -> None:
    """Split anywhere (between <FS> and <CR> too): the same frames; bytes outside frames and a frame restarted by
    a new start block are dropped and counted."""
    framer = MllpFramer(limit=1024)
    frames = [f for i in range(0, len(STREAM), size) for f in framer.feed(STREAM[i:i + size])]
    assert EXPECTED == frames
    assert (len(b"junk\x1c\r") + len(b"noise") + len(b"MSH|trunc")) == framer.dropped
    assert not framer.in_frame


def test_a_frame_over_the_limit_is_reported_once_with_its_head_and_not_kept() -> None:
    framer = MllpFramer(limit=10_000)
    head = b"\x0bMSH|^~\\&|A|B\rNTE|"
    out = framer.feed(head)
    for _ in range(100):
        out += framer.feed(b"x" * 1000)
        assert framer.buffered <= 10_000
    out += framer.feed(b"\x1c\r\x0bMSH|next\x1c\r")
    assert [("too_large", head[1:]), ("message", b"MSH|next")] == [(f.kind, f.data[:len(head) - 1]) for f in out]
    assert 4096 == len(out[0].data)


def test_framing_is_linear_in_the_bytes() -> None:
    """A frame fed in small chunks costs about the same per byte at 1 MB as at 250 kB (no re-scanning)."""
    def seconds(size: int) -> float:
        framer = MllpFramer(limit=8 << 20)
        chunk = b"NTE|1||comment\r" * 100
        began = time.perf_counter()
        framer.feed(b"\x0b")
        for _ in range(size // len(chunk)):
            framer.feed(chunk)
        assert [Frame] == [type(f) for f in framer.feed(b"\x1c\r")]
        return time.perf_counter() - began

    small, large = min(seconds(250_000) for _ in range(3)), min(seconds(1_000_000) for _ in range(3))
    assert large < small * 4 * 2.5, f"250 kB {small:.4f}s, 1 MB {large:.4f}s"
