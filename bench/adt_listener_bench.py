#!/usr/bin/env python3
"""Benchmark: the ADT listener under the attacks of issue 20 (point 6), before and after, in one process.

1. Parse time of one ADT^A03 with 10k/20k/40k NTE segments: the parser of ``--before`` (loaded from
   ``git show <rev>:feeds/adt.py``) and today's ``feeds.adt.parse_adt``.
2. The latency of a good ADT^A01 (median and worst of ``--probes``), sent from a thread with its own event
   loop (so it is measured even while the listener's loop stalls), and the process's RSS growth, on the
   before and after listeners (an embedded dev server and records store; no worker needed for A01):
   quiet; 200 idle connections; 200 partial frames of just under 1 MiB; 3 messages of 40k NTE segments.

    .venv/bin/python bench/adt_listener_bench.py
    .venv/bin/python bench/adt_listener_bench.py --before 804fb6d --probes 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from store.connect import configured_database

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import module_at, scratch_stack  # noqa: E402
from feeds.adt import parse_adt  # noqa: E402
from feeds.adt_listener import serve_adt  # noqa: E402
from runtime.logging import configure_logging  # noqa: E402
from store.sql_records import SqlCareRecordStore  # noqa: E402
from tests.feeds.hl7_messages import adt, frame  # noqa: E402
from tests.fhir_factory import make_member  # noqa: E402

BEFORE = "804fb6d"  # the last commit before the hardening


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _notes(count: int) -> str:
    return "".join(f"NTE|{i}||comment {i:06d}\r" for i in range(count))


def parse_times(before: types.ModuleType) -> None:
    print("parse time of one ADT^A03 (best of 3)")
    print(f"{'segments':>9} {'kB':>6} {'before s':>9} {'after s':>8} {'ratio':>7}")
    for count in (10_000, 20_000, 40_000):
        text = adt("A03", "pt-bench", "visit-bench") + _notes(count)
        times = []
        for parse in (before.parse_adt, parse_adt):
            best = float("inf")
            for _ in range(3):
                began = time.perf_counter()
                parse(text, time_zone="UTC")
                best = min(best, time.perf_counter() - began)
            times.append(best)
        print(f"{count:>9} {len(text) // 1000:>6} {times[0]:>9.3f} {times[1]:>8.4f} {times[0] / times[1]:>6.0f}x")


def _probe(host: str, port: int, messages: list[str], delay: float) -> list[float]:
    """After ``delay``, send each good message on a new connection from a thread of its own (measured even while
    the listener's loop stalls); the seconds to each ACK."""
    async def run() -> list[float]:
        await asyncio.sleep(delay)
        waits = []
        for message in messages:
            began = time.perf_counter()
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(frame(message))
            await writer.drain()
            await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 120)
            waits.append(time.perf_counter() - began)
            writer.close()
        return waits

    out: list[list[float]] = []
    thread = threading.Thread(target=lambda: out.append(asyncio.run(run())))
    thread.start()
    thread.join()
    return out[0]


async def _load_idle(host: str, port: int) -> list:
    held = []
    for _ in range(4):
        held += await asyncio.gather(*(asyncio.open_connection(host, port) for _ in range(50)))
    return held


async def _load_partial(host: str, port: int) -> list:
    payload = b"\x0b" + adt("A03", "pt-x", "visit-x").encode() + b"NTE|1||" + b"x" * ((1 << 20) - 1024)
    held = []
    for _ in range(200):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(payload)
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(writer.drain(), 10)
        held.append((reader, writer))
    return held


async def _load_huge(host: str, port: int, store: SqlCareRecordStore) -> list:
    held = []
    notes = _notes(40_000)
    for _ in range(3):
        member = make_member(store)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(frame(adt("A03", member.member_id, f"visit-huge-{time.time_ns()}") + notes))
        await writer.drain()
        held.append((reader, writer))
    return held


async def latencies(label: str, serve: Callable, stack, settings, probes: int) -> None:
    store = SqlCareRecordStore(configured_database(settings))
    server = await serve(settings, stack.client, store, host="127.0.0.1", port=0)
    host, port = server.sockets[0].getsockname()[:2]
    loads = {"quiet": None, "200 idle connections": _load_idle, "200 partial 1 MiB frames": _load_partial,
             "3 x 40k-segment messages": _load_huge}
    try:
        for name, load in loads.items():
            goods = [adt("A01", make_member(store).member_id, f"visit-{time.time_ns()}-{i}") for i in range(probes)]
            rss = _rss_mib()
            # The load goes in first; the probe starts sending 1 s later, from its own thread.
            probe = asyncio.ensure_future(asyncio.to_thread(_probe, host, port, goods, 1.0))
            held = [] if load is None else await (load(host, port, store) if load is _load_huge else load(host, port))
            waits = await probe
            grown = _rss_mib() - rss
            print(f"{label:>7} {name:<26} good A01 median {statistics.median(waits):7.3f}s worst "
                  f"{max(waits):7.3f}s  RSS +{grown:6.0f} MiB")
            for item in held:
                item[1].close()
            await asyncio.sleep(0.5)
    finally:
        server.close()
        await server.wait_closed()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BEFORE, help="git revision of the listener before the hardening")
    parser.add_argument("--probes", type=int, default=5, help="good A01 messages per scenario")
    args = parser.parse_args()
    configure_logging("ERROR")
    before_adt = module_at("_adt_before", args.before, "feeds/adt.py", {})
    before_listener = module_at("_adt_listener_before", args.before, "feeds/adt_listener.py",
                              {"from feeds.adt import": "from _adt_before import"})
    parse_times(before_adt)
    async with scratch_stack() as (settings, stack):
        # After first: each listener's RSS growth is measured on the heap the previous one left, and the before
        # listener's 200 MiB, once freed, would hide the after listener's growth.
        for label, serve in (("after", serve_adt), ("before", before_listener.serve_adt)):
            await latencies(label, serve, stack, settings, args.probes)


if __name__ == "__main__":
    asyncio.run(main())
