#!/usr/bin/env python3
"""Benchmark (issue 25): the approval inbox at plan scale, on a dev server with production's visibility limit.

A dev server is started with ``--dynamic-config-value frontend.namespaceRPS.visibility=10`` (a production
frontend's default) and its Prometheus endpoint. ``--runs`` real outreach runs park for approval (three items
each) on a real careloom worker: their items reach the approvals projection through the ledger activity. The
projection is then filled up to ``--items`` (default 50,000) with copies of those real items under synthetic run
ids (the inbox reads only the projection, so its cost depends on the rows, not on how they were written; the
copies are said so and removed at the end). While 4 gauge refreshers (``RunGauges``, as 4 metrics-serving workers
run them) refresh every second, the bench times, each over ``--repeat`` requests (median and p90):

* the first inbox page (50 items), a filtered page (queue + role), the 100th page (keyset cursor);
* the visibility requests per inbox request, counted by the server (ListWorkflowExecutions,
  CountWorkflowExecutions, ScanWorkflowExecutions from its metrics) over a window with nothing else asking;
* the gauge refreshers' visibility requests while the pages were timed (one lease holder counts; the others
  none);
* a bulk approval of every real ``create_task`` item through the validated, signed update, the run ids from the
  projection as the API's bulk endpoint takes them (items/s).

    .venv/bin/python bench/approvals_bench.py                        # 300 real runs, 50,000 items
    .venv/bin/python bench/approvals_bench.py --runs 100 --items 5000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.testing import WorkflowEnvironment  # noqa: E402

from bench.common import free_port  # noqa: E402
from guardrails.approvals import PendingApproval  # noqa: E402
from guardrails.policy import GuardrailPolicy  # noqa: E402
from runtime.logging import configure_logging  # noqa: E402
from runtime.plugin import CareloomPlugin  # noqa: E402
from runtime.search_attributes import ALL_KEYS  # noqa: E402
from runtime.settings import Settings  # noqa: E402
from runtime.temporal_server import temporal_binary  # noqa: E402
from store.approval_items import ApprovalItems, ItemChange, ItemQuery, apply_change  # noqa: E402
from store.connect import configured_database  # noqa: E402
from store.sql_records import SqlCareRecordStore  # noqa: E402
from tests.deciding import TEST_SIGNER, TEST_SIGNING_KEYS  # noqa: E402
from tests.fhir_factory import make_member  # noqa: E402
from worker import build_worker  # noqa: E402
from workflows.approval_projection import item_row  # noqa: E402
from workflows.inbox import BulkItem, InboxFilter, decide_bulk, list_inbox  # noqa: E402
from workflows.outreach_client import start_outreach  # noqa: E402
from workflows.run_gauges import RunGauges  # noqa: E402

# Every action needs a human: three pending items per run (task, message, care plan); SLAs far away.
POLICY = GuardrailPolicy(contact_window_start=dtime(0), contact_window_end=dtime.max, min_confidence=0.999)
_VISIBILITY_OPS = ("ListWorkflowExecutions", "CountWorkflowExecutions", "ScanWorkflowExecutions")
SYNTHETIC = "bench-synthetic-"


def _visibility_requests(metrics_url: str) -> int:
    """Visibility requests the server has answered so far (its Prometheus counters)."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()  # noqa: S310 - loopback
    total = 0
    for line in text.splitlines():
        if line.startswith("service_requests{") and any(f'operation="{op}"' in line for op in _VISIBILITY_OPS):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered) * 1000, 1),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1)}


async def _timed(repeat: int, call) -> tuple[dict[str, float], Any]:  # noqa: ANN001
    samples, last = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        last = await call()
        samples.append(time.perf_counter() - t0)
    return _stats(samples), last


def _fill(items: ApprovalItems, real: list[PendingApproval], target: int) -> int:
    """Copies of the real items under synthetic run ids until the projection holds ``target`` rows; how many."""
    have = items.page(ItemQuery(), limit=1).total_items
    need, made, now, batch = max(0, target - have), 0, datetime.now(UTC), []
    while made < need:
        source = real[made % len(real)]
        run = f"{SYNTHETIC}{made // 3:06d}"
        copy = source.model_copy(update={"workflow_id": run, "sla_deadline": source.sla_deadline + timedelta(
            minutes=made % 5000), "member_pseudonym": f"mbr-bench{made // 3:07d}"})
        batch.append(item_row(copy, run_id="synthetic", program="MemberOutreachWorkflow"))
        made += 1
        if len(batch) == 2000 or made == need:
            rows = list(batch)
            items.db.write(lambda db, rows=rows: [apply_change(db, ItemChange(workflow_id=r.workflow_id, upserts=[r]),
                                                               now) for r in rows])
            batch.clear()
    return made


async def main(runs: int, target: int, repeat: int, database_url: str | None, as_json: bool) -> None:
    configure_logging("WARNING", "json")
    state = Path(tempfile.mkdtemp(prefix="careloom-approvals-bench-"))
    metrics_port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()), plugins=[CareloomPlugin()], search_attributes=ALL_KEYS,
        dev_server_log_level="error",
        dev_server_extra_args=["--dynamic-config-value", "frontend.namespaceRPS.visibility=10",
                               "--metrics-port", str(metrics_port)])
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    settings = Settings(state_dir=state, tool_attempts=1, database_url=database_url, signing_keys=TEST_SIGNING_KEYS,
                        _env_file=None)
    store = SqlCareRecordStore(configured_database(settings))
    items = ApprovalItems(store.db)
    client = env.client
    out: dict[str, Any] = {"runs": runs, "items_target": target, "visibility_rps_limit": 10,
                           "store": store.db.dialect}
    try:
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        async with build_worker(client, settings, store, task_queue=queue):
            t0 = time.perf_counter()
            for _ in range(runs):
                member = make_member(store)
                await start_outreach(client, member_id=member.member_id, encounter_id=member.encounter_id,
                                     policy=POLICY, task_queue=queue, tool_attempts=1, initiated_by="bench",
                                     salt=settings.pseudonym_salt.get_secret_value())
            while (await list_inbox(items, InboxFilter(), page_size=1)).total_runs < runs:
                await asyncio.sleep(0.5)
            out["park_seconds"] = round(time.perf_counter() - t0, 1)
            cursor = None
            real: list[PendingApproval] = []
            while True:
                page = await list_inbox(items, InboxFilter(), page_size=500, cursor=cursor)
                real += page.items
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            t0 = time.perf_counter()
            out["synthetic_rows"] = await asyncio.to_thread(_fill, items, real, target)
            out["fill_seconds"] = round(time.perf_counter() - t0, 1)
            out["projection_rows"] = (await list_inbox(items, InboxFilter(), page_size=1)).total_items

            refreshers = [RunGauges(client, settings, store.db, interval=1.0, holder=f"worker-{n}")
                          for n in range(4)]
            gauges = [asyncio.create_task(g.run()) for g in refreshers]
            await asyncio.sleep(2)  # the refreshers take and hold the lease
            gauge_before, started = sum(g.visibility_calls for g in refreshers), time.perf_counter()
            first, page1 = await _timed(repeat, lambda: list_inbox(items, InboxFilter(), page_size=50))
            queue_name, role = real[0].queue, real[0].required_role
            filtered, pagef = await _timed(repeat, lambda: list_inbox(
                items, InboxFilter(queue=queue_name, role=role), page_size=50))
            cursor = None
            for _ in range(99):
                cursor = (await list_inbox(items, InboxFilter(), page_size=50, cursor=cursor)).next_cursor
            hundredth, page100 = await _timed(repeat, lambda: list_inbox(items, InboxFilter(), page_size=50,
                                                                         cursor=cursor))
            gauge_rate = (sum(g.visibility_calls for g in refreshers) - gauge_before) / (time.perf_counter() - started)
            asked = sum(1 for g in refreshers if g.visibility_calls)
            for task in gauges:
                task.cancel()
            # The inbox's own visibility requests, counted by the server with nothing else asking.
            await asyncio.sleep(2)
            before = _visibility_requests(metrics_url)
            for _ in range(repeat):
                await list_inbox(items, InboxFilter(), page_size=50)
                await list_inbox(items, InboxFilter(queue=queue_name, role=role), page_size=50)
                await list_inbox(items, InboxFilter(), page_size=50, cursor=cursor)
            await asyncio.sleep(2)
            inbox_visibility = _visibility_requests(metrics_url) - before
            out.update({
                "first_page": first | {"items": len(page1.items)},
                "filtered_page": filtered | {"items": len(pagef.items), "matching": pagef.total_items},
                "page_100": hundredth | {"items": len(page100.items)},
                "visibility_requests_per_inbox_request": inbox_visibility / (3 * repeat),
                "gauge_visibility_requests_per_s": round(gauge_rate, 2),
                "refreshers_that_asked_visibility": asked,
            })

            tasks = [i for i in real if i.tool == "create_task"]
            t0 = time.perf_counter()
            rows = await asyncio.to_thread(items.rows_for, [(i.workflow_id, i.approval_id) for i in tasks])
            results = await decide_bulk(
                client, [BulkItem(workflow_id=i.workflow_id, approval_id=i.approval_id, digest=i.digest)
                         for i in tasks], decision="approve", tool="create_task", approver="rn.bench", role="rn",
                signer=TEST_SIGNER, run_ids={w: r.run_id for (w, _), r in rows.items()})
            bulk_s = time.perf_counter() - t0
            out["bulk_approval"] = {"items": len(tasks), "ok": sum(r.ok for r in results),
                                    "seconds": round(bulk_s, 2), "items_per_s": round(len(tasks) / bulk_s, 1)}
            items.db.write(lambda db: db.rows("DELETE FROM approval_items WHERE workflow_id LIKE :p",
                                              {"p": f"{SYNTHETIC}%"}))
            async for execution in client.list_workflows(f"TaskQueue = '{queue}' AND ExecutionStatus = 'Running'"):
                await client.get_workflow_handle(execution.id).terminate("bench finished")
    finally:
        store.close()
        await env.shutdown()
        shutil.rmtree(state, ignore_errors=True)
    if as_json:
        print(json.dumps(out, indent=2))
        return
    print(f"approval inbox: {out['projection_rows']:,} items in the projection ({runs} real parked runs, "
          f"{out['synthetic_rows']:,} copies), {out['store']}, dev server with visibility RPS limit 10, 2 cores")
    for key, label in (("first_page", "first page (50)"), ("filtered_page", "filtered page (queue + role)"),
                       ("page_100", "100th page (keyset)")):
        figure = out[key]
        print(f"  {label:<30} median {figure['median_ms']:7.1f} ms   p90 {figure['p90_ms']:7.1f} ms")
    print(f"  visibility requests per inbox request (server-counted): "
          f"{out['visibility_requests_per_inbox_request']:.2f}")
    print(f"  4 gauge refreshers (1 s interval) meanwhile: {out['refreshers_that_asked_visibility']} of 4 asked "
          f"visibility, {out['gauge_visibility_requests_per_s']} requests/s")
    bulk = out["bulk_approval"]
    print(f"  bulk approval: {bulk['ok']}/{bulk['items']} items in {bulk['seconds']} s = {bulk['items_per_s']} items/s")
    print(f"  (parking {runs} runs took {out['park_seconds']} s; filling the copies {out['fill_seconds']} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--database-url", default=None, help="A PostgreSQL URL; default SQLite in a temp folder.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.items, args.repeat, args.database_url, args.json))
