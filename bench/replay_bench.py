#!/usr/bin/env python3
"""Benchmark: replay throughput over >= 1,000 exported histories on this machine.

Copies the golden histories (every outcome: auto-completed, approved, edited,
rejected, escalated, deferred, ineligible, blocked) to N files and replays them
the way `careloom history replay` does, printing histories per second for the
default (unsandboxed, 2 processes) and, as a baseline in the same process, one
process and the sandboxed runner.

    .venv/bin/python bench/replay_bench.py --histories 1000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from history.files import history_files  # noqa: E402
from history.replay import replay_files  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "histories"


def main(count: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="careloom-replay-"))
    sources = sorted(GOLDEN.glob("*.json"))
    for n in range(count):
        source = sources[n % len(sources)]
        shutil.copy(source, folder / f"{source.stem}-{n:05d}.json")
    files = history_files([folder])
    rows = []
    for label, processes, sandbox, subset in (("2 processes, unsandboxed (default)", 2, False, files),
                                              ("1 process, unsandboxed", 1, False, files),
                                              ("1 process, sandboxed", 1, True, files[: max(1, count // 5)])):
        started = time.perf_counter()
        outcomes = replay_files(subset, processes=processes, sandbox=sandbox)
        elapsed = time.perf_counter() - started
        assert all(o.status == "ok" for o in outcomes), [o for o in outcomes if o.status != "ok"][:3]
        rows.append((label, len(subset), elapsed))
    print(f"replay of exported MemberOutreachWorkflow histories, {len(sources)} kinds, 2 cores")
    base = rows[1][1] / rows[1][2]
    for label, n, elapsed in rows:
        rate = n / elapsed
        print(f"  {label:<38} {n:>5} histories {elapsed:7.1f} s {rate:7.1f}/s  ({rate / base:.2f}x one process)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--histories", type=int, default=1000)
    main(parser.parse_args().histories)
