#!/usr/bin/env python3
"""Benchmark: the approval inbox with N runs parked for approval on the embedded server.

Prints the time to list the first page and to list everything (visibility scan
plus status queries of each page's runs), and the time to bulk-approve 200
items through the per-item validated update.

    .venv/bin/python bench/approvals_bench.py --runs 1000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import time as dtime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import scratch_stack  # noqa: E402
from guardrails.policy import GuardrailPolicy  # noqa: E402
from runtime.logging import configure_logging  # noqa: E402
from tests.fhir_factory import make_member  # noqa: E402
from worker import build_worker  # noqa: E402
from workflows.inbox import BulkItem, InboxFilter, decide_bulk, list_inbox
from workflows.outreach_client import start_outreach

# Every action needs a human: three pending items per run (task, message, care plan).
POLICY = GuardrailPolicy(contact_window_start=dtime(0), contact_window_end=dtime.max, min_confidence=0.999)


async def main(runs: int, bulk: int) -> None:
    configure_logging("WARNING", "json")
    async with scratch_stack() as (settings, stack):
        client, store = stack.client, stack.store
        members = [make_member(store) for _ in range(runs)]
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        async with build_worker(client, settings, store, task_queue=queue):
            t0 = time.perf_counter()
            for m in members:
                await start_outreach(client, member_id=m.member_id, encounter_id=m.encounter_id, policy=POLICY,
                                     task_queue=queue, tool_attempts=1, initiated_by="bench",
                                     salt=settings.pseudonym_salt.get_secret_value())
            while True:  # until every run is parked and visible
                page = await list_inbox(client, InboxFilter(), page_size=1)
                if page.total_runs >= runs:
                    break
                await asyncio.sleep(1)
            parked_s = time.perf_counter() - t0

            t0 = time.perf_counter()
            first = await list_inbox(client, InboxFilter(), page_size=50)
            first_s = time.perf_counter() - t0

            t0 = time.perf_counter()
            items, cursor, pages = [], None, 0
            while True:
                page = await list_inbox(client, InboxFilter(), page_size=200, cursor=cursor)
                items.extend(page.items)
                pages += 1
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            all_s = time.perf_counter() - t0

            tasks = [i for i in items if i.tool == "create_task"][:bulk]
            t0 = time.perf_counter()
            results = await decide_bulk(
                client, [BulkItem(workflow_id=i.workflow_id, approval_id=i.approval_id, digest=i.digest)
                         for i in tasks], decision="approve", tool="create_task", approver="rn.bench", role="rn")
            bulk_s = time.perf_counter() - t0

    print(f"{runs} runs parked for approval ({runs * 3} pending items), embedded dev server on SQLite, 2 cores")
    print(f"  start + park all runs:           {parked_s:8.1f} s")
    print(f"  list first page (50 runs):       {first_s * 1000:8.0f} ms  ({len(first.items)} items)")
    print(f"  list everything ({pages} pages):     {all_s * 1000:8.0f} ms  ({len(items)} items)")
    print(f"  bulk-approve {len(tasks)} items:         {bulk_s * 1000:8.0f} ms  "
          f"({sum(r.ok for r in results)} ok, {len(tasks) / bulk_s:.0f} items/s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--bulk", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.bulk))
