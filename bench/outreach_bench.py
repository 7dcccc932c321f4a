#!/usr/bin/env python3
"""Benchmark: careloom outreach runs vs the same activity sequence in a bare Temporal workflow.

Both run in one process against one embedded dev server (SQLite persistence),
on the same synthetic members (LACE 5: task, message and care plan, all within
policy), so the difference is what careloom adds: the LangGraph agent,
guardrails, status publishing and search attributes.

    .venv/bin/python bench/outreach_bench.py --runs 200
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

from temporalio.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baseline import POLICY, BareInput, BareOutreachBaseline, bare_worker  # noqa: E402
from bench.common import history_size, scratch_stack  # noqa: E402
from runtime.logging import configure_logging  # noqa: E402
from tests.fhir_factory import make_member  # noqa: E402
from worker import build_worker  # noqa: E402
from workflows.outreach_client import start_outreach  # noqa: E402


async def _measure(name: str, start_all, client: Client, runs: int) -> dict[str, float]:  # noqa: ANN001
    cpu0, wall0 = time.process_time(), time.perf_counter()
    handles = await start_all()
    results = await asyncio.gather(*(h.result() for h in handles))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    events, size = await history_size(client, [h.id for h in handles[: min(50, runs)]])
    return {"name": name, "runs": len(results), "runs_per_s": runs / wall, "cpu_ms_per_run": 1000 * cpu / runs,
            "events_per_run": events, "history_bytes_per_run": size, "wall_s": wall}


async def main(runs: int) -> None:
    configure_logging("WARNING", "json")
    async with scratch_stack() as (settings, stack):
        client, store = stack.client, stack.store
        members = [make_member(store) for _ in range(2 * runs)]
        careloom_members, bare_members = members[:runs], members[runs:]
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        worker = build_worker(client, settings, store, task_queue=queue)
        baseline = bare_worker(client, settings, store, queue + "-bare")
        async with worker, baseline:
            async def start_careloom():  # noqa: ANN202
                return [(await start_outreach(client, member_id=m.member_id, encounter_id=m.encounter_id,
                                              policy=POLICY, task_queue=queue, tool_attempts=1,
                                              salt=settings.pseudonym_salt.get_secret_value()))[0]
                        for m in careloom_members]

            async def start_bare():  # noqa: ANN202
                return [await client.start_workflow(BareOutreachBaseline.run, BareInput(
                    member_id=m.member_id, encounter_id=m.encounter_id), id=f"bare-{m.member_id}",
                    task_queue=queue + "-bare") for m in bare_members]

            bare = await _measure("bare workflow, 8 activities", start_bare, client, runs)
            ours = await _measure("careloom MemberOutreachWorkflow", start_careloom, client, runs)
    print(f"{runs} runs each, one process, embedded dev server on SQLite, 2 cores\n")
    print(f"{'variant':<34}{'runs/s':>9}{'CPU ms/run':>12}{'events/run':>12}{'history B/run':>15}")
    for row in (bare, ours):
        print(f"{row['name']:<34}{row['runs_per_s']:>9.1f}{row['cpu_ms_per_run']:>12.1f}"
              f"{row['events_per_run']:>12.1f}{row['history_bytes_per_run']:>15.0f}")
    print(f"{'ratio careloom / bare':<34}{ours['runs_per_s'] / bare['runs_per_s']:>9.2f}"
          f"{ours['cpu_ms_per_run'] / bare['cpu_ms_per_run']:>12.2f}"
          f"{ours['events_per_run'] / bare['events_per_run']:>12.2f}"
          f"{ours['history_bytes_per_run'] / bare['history_bytes_per_run']:>15.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    asyncio.run(main(parser.parse_args().runs))
