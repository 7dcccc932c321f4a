#!/usr/bin/env python3
"""Benchmark: the worker's fixed activity pool vs the SDK's resource-based tuner vs poller autoscaling.

The same workload for each variant: N careloom outreach runs (synthetic members, LACE 5, within policy: task,
message and care plan, no approval) started at once and driven to completion on one worker of their own, in one
process against one embedded dev server (bench/outreach_bench.py's stack). Variants, each ``--rounds`` times in
turn (A B C D A B C D: a round's warm caches and the host's drift fall on every variant alike):

* fixed: ``build_worker`` as shipped: ThreadPoolExecutor(max_workers=16), the SDK's fixed slots, 5 pollers;
* tuner: ``build_worker(tuner=resource_based_tuner())`` (CPU 0.9 / memory 0.8 targets, up to 64 activity slots
  and threads); tuner-cpu1: the same with a CPU target of 1.0;
* autoscale: ``build_worker(autoscale_pollers=True)`` (``PollerBehaviorAutoscaling`` for workflow and activity
  tasks; the fixed pool).

Printed per variant: runs/s (median of the rounds, and each round), this process's CPU ms per run, and its peak
RSS while the variant ran (sampled every 50 ms from /proc); then each variant's ratio to the fixed pool.

    .venv/bin/python bench/worker_tuning_bench.py --runs 40 --rounds 3
    .venv/bin/python bench/worker_tuning_bench.py --runs 40 --rounds 5 --variants autoscale
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baseline import POLICY  # noqa: E402
from bench.common import scratch_stack  # noqa: E402
from runtime.logging import configure_logging  # noqa: E402
from tests.fhir_factory import make_member  # noqa: E402
from worker import build_worker, resource_based_tuner  # noqa: E402
from workflows.outreach_client import start_outreach  # noqa: E402

VARIANTS = {
    "fixed": {},
    "tuner": {"tuner": 0.9},
    "tuner-cpu1": {"tuner": 1.0},
    "autoscale": {"autoscale_pollers": True},
}


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def one_round(name: str, client, settings, store, runs: int) -> dict[str, float]:  # noqa: ANN001
    """Start ``runs`` outreach runs on a new worker of ``name``'s configuration and wait for every result."""
    options = dict(VARIANTS[name])
    if (target_cpu := options.pop("tuner", None)) is not None:
        options["tuner"] = resource_based_tuner(target_cpu=target_cpu)
    salt = settings.pseudonym_salt.get_secret_value()
    members = [make_member(store) for _ in range(runs)]
    queue = f"tuning-{name}-{uuid.uuid4().hex[:8]}"
    peak = rss_mb()
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, rss_mb())
            await asyncio.sleep(0.05)

    async with build_worker(client, settings, store, task_queue=queue, **options):
        sampler = asyncio.create_task(sample())
        cpu0, wall0 = time.process_time(), time.perf_counter()
        handles = [(await start_outreach(client, member_id=m.member_id, encounter_id=m.encounter_id, policy=POLICY,
                                         task_queue=queue, tool_attempts=1, salt=salt))[0] for m in members]
        results = await asyncio.gather(*(h.result() for h in handles))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        sampling = False
        await sampler
    done = sum(r.status == "completed" for r in results)
    return {"runs_per_s": runs / wall, "cpu_ms_per_run": 1000 * cpu / runs, "rss_mb": peak, "completed": done,
            "wall_s": wall}


async def main(runs: int, rounds: int, warmup: int, variants: list[str]) -> None:
    configure_logging("WARNING", "json")
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    async with scratch_stack() as (settings, stack):
        client, store = stack.client, stack.store
        if warmup:
            await one_round("fixed", client, settings, store, warmup)  # compile, caches, server warm: not measured
        for _ in range(rounds):
            for name in variants:
                rows[name].append(await one_round(name, client, settings, store, runs))
    print(f"{runs} outreach runs per round, {rounds} rounds per variant (interleaved), one process, embedded dev "
          f"server (SQLite); host: {len(__import__('os').sched_getaffinity(0))} cores\n")
    print(f"{'variant':<11}{'runs/s (median)':>17}{'rounds':>26}{'CPU ms/run':>12}{'peak RSS MB':>13}"
          f"{'completed':>11}")
    summary = {}
    for name, measured in rows.items():
        rate = statistics.median(r["runs_per_s"] for r in measured)
        cpu = statistics.median(r["cpu_ms_per_run"] for r in measured)
        rss = max(r["rss_mb"] for r in measured)
        summary[name] = (rate, cpu, rss)
        each = " ".join(f"{r['runs_per_s']:.1f}" for r in measured)
        completed = f"{sum(r['completed'] for r in measured):.0f}/{runs * rounds}"
        print(f"{name:<11}{rate:>17.1f}{each:>26}{cpu:>12.1f}{rss:>13.0f}{completed:>11}")
    base = summary["fixed"]
    for name in [v for v in variants if v != "fixed"]:
        rate, cpu, rss = summary[name]
        print(f"ratio {name} / fixed: runs/s {rate / base[0]:.2f}, CPU ms/run {cpu / base[1]:.2f}")
    print("(peak RSS is the process's, which only grows: read it as an upper bound, not per variant)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=20, help="Runs on an unmeasured first worker (0: none).")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="Variants to measure (fixed always, as the base).")
    args = parser.parse_args()
    chosen = ["fixed", *(v for v in args.variants if v != "fixed")]
    asyncio.run(main(args.runs, args.rounds, args.warmup, chosen))
