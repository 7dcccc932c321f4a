#!/usr/bin/env python3
"""Benchmark: replay throughput over >= 1,000 exported histories on this machine.

Copies the golden histories (every outcome: auto-completed, approved, edited,
rejected, escalated, deferred, ineligible, blocked, model-planned,
model-fallback) to N files and replays them the way `careloom history replay`
does: load the JSON, replay in 2 processes, unsandboxed. The default setup is
run ``--repeat`` times (this machine's speed varies by tens of percent from
minute to minute) and the median is reported.

Baselines, in the same process and on the same machine minute:
- one process, unsandboxed, careloom;
- one process, unsandboxed, a bare Temporal workflow making the same eight
  tool calls (bench/baseline.py), recorded on an embedded dev server at the
  start of the bench: the cost of replay with no agent, guardrails or status;
- one process, sandboxed (the worker's runner), on a fifth of the files.

    .venv/bin/python bench/replay_bench.py --histories 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from history.files import OUTREACH_TYPE, history_files, load_history, write_history  # noqa: E402
from history.replay import replay_files, replay_histories  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "histories"
BARE_TYPE = "BareOutreachBaseline"


def _copies(sources: list[Path], count: int, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        source = sources[n % len(sources)]
        shutil.copy(source, folder / f"{source.stem}-{n:05d}.json")
    return history_files([folder])


def _workflow_tasks(paths: list[Path]) -> float:
    tasks = 0
    for path in paths:
        tasks += sum(e["eventType"] == "EVENT_TYPE_WORKFLOW_TASK_COMPLETED" for e in json.loads(path.read_text())["events"])
    return tasks / len(paths)


async def _record_bare(folder: Path, runs: int = 10) -> list[Path]:
    """Run the bare baseline workflow on an embedded dev server and export its histories."""
    from bench.baseline import BareInput, BareOutreachBaseline, bare_worker
    from bench.common import scratch_stack
    from tests.fhir_factory import make_member

    paths = []
    async with scratch_stack() as (settings, stack):
        queue = f"replay-bench-{uuid.uuid4().hex[:8]}"
        async with bare_worker(stack.client, settings, stack.store, queue):
            for _ in range(runs):
                member = make_member(stack.store)
                handle = await stack.client.start_workflow(
                    BareOutreachBaseline.run, BareInput(member_id=member.member_id, encounter_id=member.encounter_id),
                    id=f"bare-{uuid.uuid4().hex[:12]}", task_queue=queue)
                await handle.result()
                paths.append(write_history(folder, await handle.fetch_history()))
    return paths


def _in_process(paths: list[Path], *, expected_type: str | None = None, sandbox: bool = False,
                workflows: list[type] | None = None) -> tuple[float, float]:
    """Load and replay in this process, as `careloom history replay --processes 1` does: (seconds, CPU s)."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    loaded = [(str(p), load_history(p, expected_type=expected_type or OUTREACH_TYPE).history)
              for p in paths]
    outcomes = asyncio.run(replay_histories(loaded, sandbox=sandbox, workflows=workflows))
    assert all(o.status == "ok" for o in outcomes), [o for o in outcomes if o.status != "ok"][:3]
    return time.perf_counter() - wall0, time.process_time() - cpu0


def _two_processes(paths: list[Path]) -> tuple[float, float]:
    """The default: `careloom history replay FOLDER` (2 spawned processes). (seconds, CPU s of the children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    outcomes = replay_files(paths, processes=2)
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert all(o.status == "ok" for o in outcomes), [o for o in outcomes if o.status != "ok"][:3]
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main(count: int, repeat: int) -> None:
    from bench.baseline import BareOutreachBaseline
    from runtime.codec import generate_key
    from runtime.logging import configure_logging

    configure_logging("WARNING", "json")
    # One payload key for the whole bench: the bare histories are recorded on a scratch stack (payloads encrypted
    # by default) and replayed here, so both must use the same key (without it the replay cannot decode them).
    # The bare replay then decrypts its payloads too, a few microseconds per history.
    os.environ.setdefault("CARELOOM_PAYLOAD_KEYS", f"bench={generate_key()}")
    root = Path(tempfile.mkdtemp(prefix="careloom-replay-"))
    # The outreach golden histories only: the bare baseline makes outreach's tool calls.
    golden = sorted(p for p in GOLDEN.glob("*.json") if not p.stem.startswith("um-"))
    files = _copies(golden, count, root / "careloom")
    recorded = asyncio.run(_record_bare(root / "bare-recorded"))
    bare_files = _copies(recorded, count, root / "bare")

    defaults = [_two_processes(files) for _ in range(repeat)]
    rates = sorted(count / wall for wall, _ in defaults)
    median_wall, median_cpu = sorted(defaults)[len(defaults) // 2]
    one = _in_process(files)
    bare = _in_process(bare_files, expected_type=BARE_TYPE, workflows=[BareOutreachBaseline])
    sandboxed_files = files[: max(1, count // 5)]
    sandboxed = _in_process(sandboxed_files, sandbox=True)

    print(f"replay of {count} exported histories per row, 2 cores; careloom: {len(golden)} golden kinds, "
          f"{_workflow_tasks(golden):.1f} workflow tasks per history on average; bare: {_workflow_tasks(recorded):.1f}")
    print(f"{'setup':<46}{'histories/s':>12}{'CPU ms/history':>16}")
    rows = [
        (f"careloom, 2 processes (default), median of {repeat}", count / median_wall, median_cpu, count),
        ("careloom, 1 process", count / one[0], one[1], count),
        ("bare baseline workflow, 1 process", count / bare[0], bare[1], count),
        ("careloom, 1 process, sandboxed", len(sandboxed_files) / sandboxed[0], sandboxed[1], len(sandboxed_files)),
    ]
    for label, rate, cpu, n in rows:
        print(f"{label:<46}{rate:>12.1f}{1000 * cpu / n:>16.1f}")
    print(f"  2-process runs: {', '.join(f'{r:.1f}' for r in rates)} histories/s "
          f"(spread {100 * (rates[-1] - rates[0]) / statistics.median(rates):.0f}%)")
    print(f"  ratio careloom / bare, 1 process: {rows[1][1] / rows[2][1]:.2f} throughput, "
          f"{(one[1] / count) / (bare[1] / count):.2f} CPU per history")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--histories", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the default setup; the median is reported")
    args = parser.parse_args()
    main(args.histories, args.repeat)
