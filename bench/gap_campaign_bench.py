#!/usr/bin/env python3
"""Measure: the care-gap campaign at population scale on PostgreSQL (issue 24, "Scale").

``bench/gaps_bench.py`` measures CQL evaluation; this measures the campaign that runs it for a whole population
(:class:`feeds.gap_campaign.CareGapCampaignWorkflow`) end to end:

1. ``--members`` (default 100,000) members from ``bench.gaps_bench.member`` (seeded: the same seed and size make
   the same records) are loaded once, with ``put_many`` in chunks, into a PostgreSQL records store in a database of
   their own (``careloom_gapbench_s<seed>_n<members>`` on the ``--database-url`` server). A marker row records a
   complete load, so a rerun with the same seed and size reuses it (``--reload`` loads again). At load time the
   bench also evaluates every generated member in memory (``tools.quality_measures.evaluate_member`` over the
   generated records, not the store) and keeps the ids of those with an open gap: the expected set.
2. A fresh Temporal dev server (``runtime.temporal_server.EmbeddedTemporalServer``, headless, throwaway state
   folder) and ONE worker subprocess (this file with ``--serve-worker``) hosting ``CareGapCampaignWorkflow`` and
   ``GapCampaignActivities`` on the campaign's task queue, its store on that database.
3. A campaign for 2026 (``start_gap_campaign``), followed across continue-as-new to its end; ``progress`` is polled
   for a live rate. Measured: wall seconds, members evaluated/s, runs started/s, the worker's CPU seconds (from
   when it polls) and peak RSS (VmHWM), and the history bytes (sum of the serialized events) of every run in the
   continue-as-new chain (listed by ``WorkflowId = '...'``): max and mean.
4. Checks: runs lost (expected members with no ``CareGapWorkflow`` in visibility, by the business-key workflow id
   of ``workflows.care_gap_client``), unexpected runs, and duplicates (an id with more than one run). Then the
   campaign is started a SECOND time for the period: it must start 0 runs and find every open member ``existing``.

What runs where: the care-gap runs the campaign starts go to a task queue NO worker polls (the campaign's
activities are given that queue), so the campaign itself is measured, not 75,000 care-gap runs on two cores. Their
execution is measured on a sample (``--execute-sample``, default 500): the real worker (``python worker.py``) on a
queue of its own, and as many runs started for the first open members with ``start_care_gap`` under a different
pseudonym salt (so their ids are their own): runs settled/s (reached a status they wait in: monitoring,
awaiting_approval, deferred, or a final one), worker CPU ms per run, peak RSS.

Prints a table (``--json``: the same as JSON); exits 1 when a run is lost or duplicated, or the second campaign
started one.

    .venv/bin/python bench/gap_campaign_bench.py                       # 100,000 members (load ~once)
    .venv/bin/python bench/gap_campaign_bench.py --members 2000 --execute-sample 100 --json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gaps_bench import member  # noqa: E402
from bench.population_bench import _cpu_seconds, _rss_mb  # noqa: E402
from tests.net import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PERIOD = (date(2026, 1, 1), date(2026, 12, 31))
SAMPLE_SALT = "gap-campaign-bench-execute-sample"
WAITING = ("monitoring", "awaiting_approval", "deferred", "completed", "needs_attention", "ineligible",
           "not_discharged", "withdrawn")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _population(seed: int, count: int, chunk: int):  # noqa: ANN202 - a generator of member chunks
    """The members of gaps_bench's generator, ``chunk`` at a time: [(member id, records)]."""
    rng = random.Random(seed)
    batch: list[tuple[str, list[dict[str, Any]]]] = []
    for i in range(count):
        mid = f"gb{i:06d}"
        batch.append((mid, member(rng, mid)))
        if len(batch) == chunk:
            yield batch
            batch = []
    if batch:
        yield batch


# --- the records store ----------------------------------------------------------------------------------------

def _database(server_url: str, name: str) -> str:
    """The URL of database ``name`` on the server, created when missing."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from store.database import open_engine

    admin = open_engine(server_url, pool_size=1).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def load_population(url: str, seed: int, count: int, chunk: int, reload: bool) -> dict[str, Any]:
    """Load the members into the store at ``url`` unless a marker says this seed and size are loaded; the
    expected open-gap members (evaluated in memory from the generated records) are kept beside it."""
    from store.connect import open_database
    from store.sql_records import SqlCareRecordStore
    from tools.quality_measures import evaluate_member, load_measures, measurement_period

    db = open_database(url)
    store = SqlCareRecordStore(db)
    try:
        db.write(lambda w: (w.rows("CREATE TABLE IF NOT EXISTS gapbench_marker (seed integer, members integer, "
                                   "resources integer, load_seconds double precision, expected_seconds double "
                                   "precision, loaded_at text)"),
                            w.rows("CREATE TABLE IF NOT EXISTS gapbench_expected (member_id text PRIMARY KEY, "
                                   "measure_ids text)")))
        marker = db.read(lambda r: r.rows("SELECT resources, load_seconds, expected_seconds FROM gapbench_marker "
                                          "WHERE seed = :s AND members = :n", {"s": seed, "n": count}))
        if marker and not reload:
            expected = dict(db.read(lambda r: r.rows("SELECT member_id, measure_ids FROM gapbench_expected")))
            return {"reused": True, "resources": marker[0][0], "load_seconds": marker[0][1],
                    "expected_seconds": marker[0][2], "expected": expected}
        db.write(lambda w: (w.rows("DELETE FROM gapbench_marker"), w.rows("DELETE FROM gapbench_expected"),
                            w.rows("DELETE FROM resources")))
        measures, period = load_measures(), measurement_period("2026")
        resources = 0
        load_s = expected_s = 0.0
        expected: dict[str, str] = {}
        for n, batch in enumerate(_population(seed, count, chunk)):
            began = time.perf_counter()
            rows = [r for _, records in batch for r in records]
            store.put_many(rows)
            # Fresh statistics after each chunk: psycopg prepares a statement after 5 runs, and a plan built while
            # the new table looked empty (a sequential scan) made each chunk slower than the last (measured:
            # 6 s, 13 s, 19 s, 25 s for the first 2,000-member chunks). ANALYZE invalidates the cached plans.
            db.write(lambda w: w.rows("ANALYZE resources"))
            load_s += time.perf_counter() - began
            resources += len(rows)
            began = time.perf_counter()
            for mid, records in batch:
                open_ids = [m.id for m in measures if evaluate_member(m, records, mid, period).gap_open]
                if open_ids:
                    expected[mid] = ",".join(open_ids)
            expected_s += time.perf_counter() - began
            print(f"  loaded {(n + 1) * chunk if (n + 1) * chunk < count else count:,} members "
                  f"({resources:,} resources, {load_s:.0f} s; in-memory evaluation {expected_s:.0f} s)", file=sys.stderr, flush=True)
        items = list(expected.items())
        for i in range(0, len(items), 5000):
            part = [{"m": m, "i": ids} for m, ids in items[i:i + 5000]]
            db.write(lambda w, part=part: [w.rows("INSERT INTO gapbench_expected VALUES (:m, :i)", p) for p in part])
        db.write(lambda w: w.rows("INSERT INTO gapbench_marker VALUES (:s, :n, :r, :l, :e, :t)",
                                  {"s": seed, "n": count, "r": resources, "l": load_s, "e": expected_s,
                                   "t": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
        return {"reused": False, "resources": resources, "load_seconds": load_s, "expected_seconds": expected_s,
                "expected": expected}
    finally:
        db.close()


# --- the campaign worker subprocess ---------------------------------------------------------------------------

async def serve_worker(runs_queue: str) -> None:
    """``--serve-worker``: the campaign workflow and its activities on CARELOOM_TASK_QUEUE; the care-gap runs
    they start go to ``runs_queue``. Until SIGTERM."""
    from temporalio.worker import Worker

    from feeds.gap_campaign import CareGapCampaignWorkflow
    from feeds.gap_campaign_activities import GapCampaignActivities
    from runtime.logging import configure_logging
    from runtime.plugin import worker_plugins
    from runtime.settings import Settings
    from runtime.temporal_client import connect
    from store.connect import configured_database
    from store.sql_records import SqlCareRecordStore

    settings = Settings(_env_file=None)
    configure_logging(settings.log_level, settings.log_format)
    store = SqlCareRecordStore(configured_database(settings))
    client = await connect(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(client, task_queue=settings.task_queue, workflows=[CareGapCampaignWorkflow],
                    activities=GapCampaignActivities(client, settings, store, runs_queue).activities(),
                    activity_executor=ThreadPoolExecutor(max_workers=16, thread_name_prefix="campaign"),
                    plugins=worker_plugins(client, settings))
    async with worker:
        await stop.wait()


class Proc:
    """A worker subprocess, its CPU measured from when it polls."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.cpu_ready = 0.0

    def cpu(self) -> float:
        return _cpu_seconds(self.proc.pid) - self.cpu_ready

    async def wait_polling(self, client, queue: str, timeout: float = 180.0) -> None:  # noqa: ANN001
        from temporalio.api.enums.v1 import TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

        began = time.perf_counter()
        kinds = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}; see {self.log}:\n"
                                   + "\n".join(self.log.read_text(errors="replace").splitlines()[-20:]))
            polling = [bool((await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
                namespace=client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind))).pollers)
                for kind in kinds]
            if all(polling):
                break
            if time.perf_counter() - began > timeout:
                raise RuntimeError(f"worker not polling {queue} after {timeout:.0f} s; see {self.log}")
            await asyncio.sleep(0.5)
        self.cpu_ready = _cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- measuring ------------------------------------------------------------------------------------------------

async def _ids(client, query: str) -> Counter[str]:  # noqa: ANN001
    return Counter([e.id async for e in client.list_workflows(query, page_size=1000)])


async def _settled_count(client, query: str, timeout: float = 120.0) -> int:  # noqa: ANN001
    """The count visibility answers once two reads a second apart agree (it lags the starts a little)."""
    last, began = -1, time.perf_counter()
    while time.perf_counter() - began < timeout:
        now = (await client.count_workflows(query)).count
        if now == last:
            return now
        last = now
        await asyncio.sleep(1.0)
    return last


async def run_campaign(client, settings, worker: Proc, data, label: str) -> dict[str, Any]:  # noqa: ANN001
    from feeds.gap_campaign_activities import start_gap_campaign
    from feeds.gap_campaign_models import CampaignProgress

    from feeds.gap_campaign_activities import campaign_workflow_id

    assert data.period_start is not None and data.period_end is not None
    chain_query = f"WorkflowId = '{campaign_workflow_id(data.period_start, data.period_end)}'"
    earlier = {e.run_id async for e in client.list_workflows(chain_query)}  # a previous campaign's chain
    cpu0 = worker.cpu()
    began = time.perf_counter()
    workflow_id, started = await start_gap_campaign(client, settings, data)
    if not started:
        raise RuntimeError(f"{label}: a campaign for the period is running already")
    handle = client.get_workflow_handle(workflow_id, result_type=CampaignProgress)
    result = asyncio.ensure_future(handle.result())
    last_print = 0.0
    while not result.done():
        await asyncio.wait({result}, timeout=2.0)
        if result.done():
            break
        if worker.proc.poll() is not None:
            raise RuntimeError(f"{label}: the campaign worker exited with {worker.proc.returncode}; see {worker.log}")
        now = time.perf_counter() - began
        if now - last_print >= 15:
            last_print = now
            try:
                p = await client.get_workflow_handle(workflow_id).query("progress", result_type=CampaignProgress)
                print(f"  {label}: {now:6.0f} s  evaluated {p.evaluated:,} ({p.evaluated / now:,.0f}/s)  "
                      f"open {p.open:,}  started {p.started:,} ({p.started / now:,.0f}/s)  existing {p.existing:,}"
                      f"  continued {p.continued}  worker RSS {_rss_mb(worker.proc.pid):.0f} MB", file=sys.stderr, flush=True)
            except Exception as err:  # noqa: BLE001 - a query racing continue-as-new; the next one answers
                print(f"  {label}: {now:6.0f} s  (progress query: {type(err).__name__})", file=sys.stderr, flush=True)
    progress: CampaignProgress = result.result()
    wall = time.perf_counter() - began
    cpu = worker.cpu() - cpu0
    chain = [e.run_id async for e in client.list_workflows(chain_query) if e.run_id not in earlier]
    sizes, events = [], []
    for run_id in chain:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        sizes.append(sum(e.ByteSize() for e in history.events))
        events.append(len(history.events))
    return {"workflow_id": workflow_id, "wall_seconds": round(wall, 2),
            "evaluated": progress.evaluated, "errors": progress.errors, "open": progress.open,
            "started": progress.started, "existing": progress.existing, "failed": progress.failed,
            "continued": progress.continued, "failures": progress.failures[:5],
            "members_evaluated_per_s": round(progress.evaluated / wall, 1),
            "runs_started_per_s": round(progress.started / wall, 1),
            "worker_cpu_seconds": round(cpu, 1), "worker_cpu_share": round(cpu / wall, 2),
            "chain_runs": len(chain), "history_bytes_max": max(sizes, default=0),
            "history_bytes_mean": round(sum(sizes) / len(sizes)) if sizes else 0,
            "history_events_max": max(events, default=0)}


async def execute_sample(client, settings, members: list[tuple[str, list[str]]], env: dict[str, str],
                         state: Path, timeout: float) -> dict[str, Any]:  # noqa: ANN001
    """The real worker on a queue of its own; ``members``' care-gap runs started there, timed until settled."""
    from guardrails.configured import outreach_policy
    from workflows.agent_run import activity_queues
    from workflows.care_gap_client import start_care_gap

    queue = f"gapbench-exec-{uuid.uuid4().hex[:6]}"
    ours = settings.model_copy(update={"task_queue": queue})
    worker = Proc([sys.executable, "worker.py"], {**env, "CARELOOM_TASK_QUEUE": queue}, state / "exec-worker.log")
    try:
        await worker.wait_polling(client, queue)
        policy = await asyncio.to_thread(outreach_policy, ours)
        gate = asyncio.Semaphore(20)

        async def start(mid: str, measure_ids: list[str]) -> None:
            async with gate:
                await start_care_gap(client, member_id=mid, period_start=PERIOD[0], period_end=PERIOD[1],
                                     measure_ids=measure_ids, policy=policy, task_queue=queue, salt=SAMPLE_SALT,
                                     initiated_by="gap-campaign", tool_attempts=ours.tool_attempts,
                                     queues=activity_queues(ours))

        began = time.perf_counter()
        await asyncio.gather(*(start(m, ids) for m, ids in members))
        started_s = time.perf_counter() - began
        statuses = ", ".join(f"'{s}'" for s in WAITING)
        settled = failed = 0
        while time.perf_counter() - began < timeout:
            settled = (await client.count_workflows(
                f"TaskQueue = '{queue}' AND CareloomStatus IN ({statuses})")).count
            failed = (await client.count_workflows(f"TaskQueue = '{queue}' AND ExecutionStatus = 'Failed'")).count
            if settled + failed >= len(members):
                break
            await asyncio.sleep(1.0)
        wall = time.perf_counter() - began
        cpu = worker.cpu()
        by_status = Counter()
        async for e in client.list_workflows(f"TaskQueue = '{queue}'", page_size=1000):
            value = (e.typed_search_attributes.get(_status_key()) if e.typed_search_attributes else None)
            by_status[str(value)] += 1
        peak = _peak_rss_mb(worker.proc.pid)
    finally:
        worker.stop()
    return {"runs": len(members), "worker": "python worker.py (the real one)", "started_seconds": round(started_s, 2),
            "settled": settled, "failed": failed, "wall_seconds": round(wall, 2),
            "runs_settled_per_s": round(settled / wall, 2), "worker_cpu_seconds": round(cpu, 1),
            "worker_cpu_ms_per_run": round(1000 * cpu / max(settled, 1), 1), "worker_peak_rss_mb": round(peak),
            "statuses": dict(by_status)}


def _status_key():  # noqa: ANN202
    from runtime.search_attributes import STATUS

    return STATUS


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from feeds.gap_campaign_models import CampaignInput
    from runtime.logging import configure_logging
    from runtime.settings import Settings
    from runtime.temporal_client import connect
    from runtime.temporal_server import EmbeddedTemporalServer
    from workflows.care_gap_client import care_gap_workflow_id

    configure_logging("WARNING", "json")
    report: dict[str, Any] = {"members": args.members, "seed": args.seed, "cpus": os.cpu_count(),
                              "load_average_at_start": os.getloadavg()[0]}
    name = f"careloom_gapbench_s{args.seed}_n{args.members}"
    url = _database(args.database_url, name)
    print(f"records store: database {name} ...", file=sys.stderr, flush=True)
    loaded = load_population(url, args.seed, args.members, args.chunk, args.reload)
    expected: dict[str, str] = loaded.pop("expected")
    report["store"] = {"database": name, **{k: (round(v, 1) if isinstance(v, float) else v)
                                            for k, v in loaded.items()},
                       "expected_open_members": len(expected)}
    print(f"  {'reused' if loaded['reused'] else 'loaded'}: {loaded['resources']:,} resources; "
          f"{len(expected):,} members with an open gap (evaluated in memory by the bench)", file=sys.stderr, flush=True)

    state = Path(tempfile.mkdtemp(prefix="careloom-gapbench-"))
    campaign_queue, runs_queue = f"gapbench-campaign-{uuid.uuid4().hex[:6]}", f"gapbench-runs-{uuid.uuid4().hex[:6]}"
    # Payloads encrypted as production encrypts them (CARELOOM_PAYLOAD_KEYS), one throwaway key shared by this
    # process and both workers (a worker given TEMPORAL_ADDRESS does not use the embedded stack's key file).
    keys = f"gapbench={base64.b64encode(secrets.token_bytes(32)).decode()}"
    settings = Settings(state_dir=state, embedded_port=free_port(), embedded_ui=False, database_url=url,
                        task_queue=campaign_queue, payload_keys=keys, _env_file=None)
    env = {**os.environ, "TEMPORAL_ADDRESS": settings.target_host, "CARELOOM_STATE_DIR": str(state),
           "CARELOOM_DATABASE_URL": url, "CARELOOM_TASK_QUEUE": campaign_queue, "CARELOOM_LOG_LEVEL": "WARNING",
           "CARELOOM_LOG_FORMAT": "json", "CARELOOM_PSEUDONYM_SALT": settings.pseudonym_salt.get_secret_value(),
           "CARELOOM_PAYLOAD_KEYS": keys}
    env.pop("CARELOOM_TEMPORAL_ADDRESS", None)
    async with EmbeddedTemporalServer(settings):
        client = await connect(settings)
        worker = Proc([sys.executable, str(Path(__file__).resolve()), "--serve-worker", runs_queue], env,
                      state / "campaign-worker.log")
        try:
            await worker.wait_polling(client, campaign_queue)
            data = CampaignInput(period_start=PERIOD[0], period_end=PERIOD[1], page=args.page, batch=args.batch,
                                 concurrency=args.concurrency)
            print(f"campaign 1: {args.members:,} members, page {args.page}, batch {args.batch}, concurrency "
                  f"{args.concurrency}; care-gap runs to {runs_queue} (no worker polls it) ...", file=sys.stderr, flush=True)
            first = await run_campaign(client, settings, worker, data, "campaign 1")
            first["worker_peak_rss_mb"] = round(_peak_rss_mb(worker.proc.pid))
            report["campaign"] = first

            salt = settings.pseudonym_salt.get_secret_value()
            want = {care_gap_workflow_id(m, PERIOD[0], PERIOD[1], salt) for m in expected}
            query = f"WorkflowType = 'CareGapWorkflow' AND TaskQueue = '{runs_queue}'"
            await _settled_count(client, query)
            found = await _ids(client, query)
            report["checks"] = {
                "expected_open_members": len(want), "runs_in_visibility": sum(found.values()),
                "distinct_run_ids": len(found), "runs_lost": len(want - set(found)),
                "unexpected_runs": len(set(found) - want), "duplicate_runs": sum(1 for n in found.values() if n > 1),
                "campaign_open_equals_expected": first["open"] == len(want)}

            print(f"campaign 1 done: {json.dumps({**first, **report['checks']})}", file=sys.stderr, flush=True)
            print("campaign 2 (same period: must start nothing) ...", file=sys.stderr, flush=True)
            second = await run_campaign(client, settings, worker, data, "campaign 2")
            await _settled_count(client, query)
            again = await _ids(client, query)
            report["rerun"] = {k: second[k] for k in ("wall_seconds", "evaluated", "open", "started", "existing",
                                                      "failed", "members_evaluated_per_s", "worker_cpu_seconds",
                                                      "chain_runs", "history_bytes_max", "history_bytes_mean")}
            report["rerun"]["runs_in_visibility_after"] = sum(again.values())
            report["rerun"]["duplicate_runs_after"] = sum(1 for n in again.values() if n > 1)
            report["worker"] = {"kind": "campaign worker subprocess (bench --serve-worker: CareGapCampaignWorkflow + "
                                        "GapCampaignActivities, care-gap runs started on an unpolled queue)",
                                "peak_rss_mb": round(_peak_rss_mb(worker.proc.pid))}
        finally:
            worker.stop()

        if args.execute_sample:
            sample = [(m, ids.split(",")) for m, ids in sorted(expected.items())[: args.execute_sample]]
            print(f"execution sample: {len(sample)} care-gap runs on the real worker (python worker.py) ...",
                  flush=True)
            report["execute_sample"] = await execute_sample(client, settings, sample, env, state, args.timeout)
    report["load_average_at_end"] = os.getloadavg()[0]
    shutil.rmtree(state, ignore_errors=True)
    return report


def _print(report: dict[str, Any]) -> None:
    store, c, k, r = report["store"], report["campaign"], report["checks"], report["rerun"]
    print(f"\ncare-gap campaign, {report['members']:,} members (seed {report['seed']}), records on PostgreSQL "
          f"({store['database']}), embedded dev server, {report['cpus']} cores "
          f"(load average {report['load_average_at_start']:.2f} at start, {report['load_average_at_end']:.2f} at end)")
    print(f"store                        {store['resources']:,} resources, "
          f"{'reused' if store['reused'] else 'loaded'} (load {store['load_seconds']:.0f} s, bench's in-memory "
          f"evaluation {store['expected_seconds']:.0f} s)")
    print(f"{'':29}{'campaign 1':>14}{'campaign 2':>14}")
    for label, key, fmt in (("wall seconds", "wall_seconds", "{:.1f}"), ("members evaluated", "evaluated", "{:,}"),
                            ("members evaluated/s", "members_evaluated_per_s", "{:,.1f}"),
                            ("with an open gap", "open", "{:,}"), ("runs started", "started", "{:,}"),
                            ("existing (joined)", "existing", "{:,}"), ("starts failed", "failed", "{:,}"),
                            ("worker CPU s", "worker_cpu_seconds", "{:,.1f}"),
                            ("continue-as-new chain runs", "chain_runs", "{:,}"),
                            ("history bytes/run, max", "history_bytes_max", "{:,}"),
                            ("history bytes/run, mean", "history_bytes_mean", "{:,}")):
        print(f"{label:<29}{fmt.format(c[key]):>14}{fmt.format(r[key]):>14}")
    print(f"runs started/s               {c['runs_started_per_s']:,.1f}")
    print(f"worker CPU share             {c['worker_cpu_share']:.2f} cores; peak RSS {report['worker']['peak_rss_mb']} MB"
          f"   ({report['worker']['kind']})")
    print(f"history events/run, max      {c['history_events_max']}")
    print(f"\nexpected open members        {k['expected_open_members']:,}   (bench's own in-memory evaluation)")
    print(f"care-gap runs in visibility  {k['runs_in_visibility']:,}  ({k['distinct_run_ids']:,} distinct ids)")
    print(f"runs lost                    {k['runs_lost']}")
    print(f"unexpected runs              {k['unexpected_runs']}")
    print(f"duplicate runs               {k['duplicate_runs']}")
    print(f"campaign 2 started           {r['started']}   (existing {r['existing']:,}; runs in visibility after "
          f"{r['runs_in_visibility_after']:,}, duplicates {r['duplicate_runs_after']})")
    if "execute_sample" in report:
        e = report["execute_sample"]
        print(f"\nexecution sample             {e['runs']} runs on {e['worker']}: settled {e['settled']}, failed "
              f"{e['failed']} in {e['wall_seconds']:.1f} s = {e['runs_settled_per_s']:.1f} runs/s; worker CPU "
              f"{e['worker_cpu_ms_per_run']:.0f} ms/run; peak RSS {e['worker_peak_rss_mb']} MB; statuses "
              f"{e['statuses']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="A PostgreSQL server (any database of it): the store is database "
                             "careloom_gapbench_s<seed>_n<members> there, kept for reruns.")
    parser.add_argument("--reload", action="store_true", help="Load the members again even if marked loaded.")
    parser.add_argument("--chunk", type=int, default=2000, help="Members per put_many.")
    parser.add_argument("--page", type=int, default=200)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--execute-sample", type=int, default=500,
                        help="Care-gap runs executed by the real worker afterwards (0: none).")
    parser.add_argument("--timeout", type=float, default=900.0, help="Seconds to wait for the sample to settle.")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve-worker", metavar="RUNS_QUEUE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_worker:
        asyncio.run(serve_worker(args.serve_worker))
        os._exit(0)  # as worker.py does: no interpreter finalisation racing the SDK's threads
    report = asyncio.run(bench(args))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    k, r = report["checks"], report["rerun"]
    if k["runs_lost"] or k["duplicate_runs"] or k["unexpected_runs"] or r["started"] or r["duplicate_runs_after"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
