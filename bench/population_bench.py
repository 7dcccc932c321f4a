#!/usr/bin/env python3
"""Benchmark: discharges at health-plan scale, delivered as HL7 ADT^A03 over MLLP.

One embedded dev server (SQLite persistence), the ADT listener in this process,
two careloom worker processes (``python worker.py``) on one task queue sharing
the records store; one worker is SIGKILLed when half the messages are
acknowledged and restarted. Messages go over ``--connections`` MLLP
connections, each waiting for its ACK before the next message (HL7 original
mode). The bare baseline — the same eight activities in a plain Temporal
workflow (bench/baseline.py), one in-process worker — runs in the same process
before, on as many members.

Printed: messages/s acknowledged; runs started/s and settled/s (completed or
parked for a human) against the baseline (ratio); worker CPU per run; RSS of
each worker; events and history bytes per run; and the checks: runs lost,
duplicate runs per business key, duplicate TCM tasks per member, messages
without ACK (each must be 0).

With ``--database-url postgresql://...`` the store is a scratch database on that PostgreSQL server (created
and dropped): the two worker processes, the listener and the checks share it, and the decision ledger's
chain is verified at the end (it must be intact).

    .venv/bin/python bench/population_bench.py --messages 5000
    .venv/bin/python bench/population_bench.py --messages 500 --database-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from hl7.mllp import open_hl7_connection

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baseline import BareInput, BareOutreachBaseline, bare_worker  # noqa: E402
from bench.common import history_size, scratch_stack  # noqa: E402
from feeds.adt_listener import serve_adt  # noqa: E402
from guardrails.configured import signer as configured_signer  # noqa: E402
from runtime.codec import DEVELOPMENT_KEY_FILE, development_keys  # noqa: E402
from runtime.logging import configure_logging  # noqa: E402
from store.ledger import DecisionLedger  # noqa: E402
from tests.feeds.hl7_messages import adt, frame  # noqa: E402
from tests.fhir_factory import make_member  # noqa: E402
from workflows.outreach_client import outreach_workflow_id  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ADMISSION_TYPES = ("E", "E", "U", "E", "R", "C", "E", "U")
"""The PV1-4 mix the bench's feed sends (5 of 8 emergency or urgent)."""
SETTLED = ("completed", "awaiting_approval", "deferred", "needs_attention", "ineligible", "not_discharged")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class WorkerProcess:
    def __init__(self, env: dict[str, str], name: str) -> None:
        self.env, self.name, self.cpu_done, self.kills = env, name, 0.0, 0
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cpu(self) -> float:
        return self.cpu_done + (_cpu_seconds(self.proc.pid) if self.proc.poll() is None else 0.0)

    def kill_and_restart(self) -> None:
        self.cpu_done += _cpu_seconds(self.proc.pid)
        self.proc.send_signal(signal.SIGKILL)
        self.kills += 1
        self.proc.wait()
        self.proc = self._spawn()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _count(client, query: str) -> int:  # noqa: ANN001
    return (await client.count_workflows(query)).count


async def _wait_settled(client, queue: str, total: int, timeout: float) -> float:  # noqa: ANN001
    """Seconds until every run on the queue is settled (or the timeout)."""
    began = time.perf_counter()
    statuses = ", ".join(f"'{s}'" for s in SETTLED)
    while time.perf_counter() - began < timeout:
        settled = await _count(client, f"TaskQueue = '{queue}' AND CareloomStatus IN ({statuses})")
        failed = await _count(client, f"TaskQueue = '{queue}' AND ExecutionStatus = 'Failed'")
        if settled + failed >= total:
            break
        await asyncio.sleep(1.0)
    return time.perf_counter() - began


async def _approve_all(client, settings, store, queue: str, victim: WorkerProcess,  # noqa: ANN001
                       timeout: float) -> tuple[int, float]:
    """Approve every parked action of the queue's runs (a signed md decision, the inbox's bulk path) and
    SIGKILL ``victim`` half-way, so the write tools (task, message, care plan) run on both workers with one
    killed mid-way: what the duplicate-write checks are about. (Approved actions, seconds until all runs
    leave awaiting_approval.)"""
    from store.approval_items import ApprovalItems
    from workflows.inbox import BulkItem, decide_bulk, list_pending_approvals

    began, approved, signer = time.perf_counter(), 0, configured_signer(settings)
    for _ in range(3):  # a decision can open the next approval of the run (a care plan's sign-off)
        ours = await _queue_runs(client, queue)
        pending = [p for p in await list_pending_approvals(ApprovalItems(store.db)) if p.workflow_id in ours]
        if not pending:
            break
        by_tool: dict[str, list] = {}
        for item in pending:
            by_tool.setdefault(item.tool, []).append(BulkItem(workflow_id=item.workflow_id,
                                                              approval_id=item.approval_id, digest=item.digest))
        for n, (tool, items) in enumerate(by_tool.items()):
            if approved == 0 and n == 0:
                print(f"approving {len(pending)} parked actions (md, signed); SIGKILL {victim.name} half-way ...",
                      flush=True)
            half = len(items) // 2
            for part, chunk in enumerate((items[:half], items[half:])):
                results = await decide_bulk(client, chunk, decision="approve", tool=tool, approver="bench-md",
                                            role="md", signer=signer)
                approved += sum(r.ok for r in results)
                if part == 0 and tool == next(iter(by_tool)) and victim.kills == 0:
                    victim.kill_and_restart()
                    print(f"  SIGKILLed and restarted {victim.name} after {approved} approvals", flush=True)
        await asyncio.sleep(2)
    while time.perf_counter() - began < timeout:
        if not await _count(client, f"TaskQueue = '{queue}' AND CareloomStatus = 'awaiting_approval'"):
            break
        await asyncio.sleep(1.0)
    return approved, time.perf_counter() - began


async def _queue_runs(client, queue: str) -> set[str]:  # noqa: ANN001
    return {e.id async for e in client.list_workflows(f"TaskQueue = '{queue}' AND ExecutionStatus = 'Running'")}


async def _baseline(client, settings, store, count: int, streams: int) -> dict[str, float]:  # noqa: ANN001
    """The bare workflow: started from ``streams`` concurrent starters, as the listener's connections."""
    members = [make_member(store) for _ in range(count)]
    queue = f"bench-bare-{uuid.uuid4().hex[:6]}"

    async def starter(chunk):  # noqa: ANN001, ANN202
        return [await client.start_workflow(
            BareOutreachBaseline.run, BareInput(member_id=m.member_id, encounter_id=m.encounter_id),
            id=f"bare-{m.member_id}", task_queue=queue) for m in chunk]

    async with bare_worker(client, settings, store, queue):
        began = time.perf_counter()
        handles = [h for chunk in await asyncio.gather(*(starter(members[i::streams]) for i in range(streams)))
                   for h in chunk]
        started = time.perf_counter() - began
        # Counted from visibility, not one result() long-poll per run (the namespace caps concurrent polls).
        while await _count(client, f"TaskQueue = '{queue}' AND ExecutionStatus = 'Completed'") < count:
            await asyncio.sleep(0.5)
        settled = time.perf_counter() - began
    events, size = await history_size(client, [h.id for h in handles[:50]])
    return {"started_per_s": count / started, "settled_per_s": count / settled, "events": events, "bytes": size}


async def _send(host: str, port: int, messages: list[str], acks: Counter, progress: list[int]) -> None:
    reader, writer = await open_hl7_connection(host, port)
    try:
        for message in messages:
            writer.write(frame(message))
            await writer.drain()
            ack = await asyncio.wait_for(reader.readmessage(), timeout=120)
            acks[str(ack.extract_field("MSA", 1, 1))] += 1
            progress[0] += 1
    finally:
        writer.close()


async def main(count: int, connections: int, timeout: float, database_url: str | None) -> None:
    configure_logging("WARNING", "json")
    async with scratch_stack(database_url) as (base, stack):
        settings = base.model_copy(update={"contact_window_start_hour": 0, "contact_window_end_hour": 24})
        client, store = stack.client, stack.store
        print(f"baseline: {count} bare workflows, one in-process worker ...", flush=True)
        bare = await _baseline(client, settings, store, count, connections)

        queue = f"bench-pop-{uuid.uuid4().hex[:6]}"
        # Production's tool attempts (10): an activity lost with the killed worker is retried on the other.
        ours = settings.model_copy(update={"task_queue": queue, "tool_attempts": 10})
        people = [(make_member(store).member_id, f"visit-{n:06d}") for n in range(count)]
        env = {**os.environ, "TEMPORAL_ADDRESS": settings.target_host, "CARELOOM_STATE_DIR": str(settings.state_dir),
               "CARELOOM_TASK_QUEUE": queue, "CARELOOM_TOOL_ATTEMPTS": "10", "CARELOOM_LOG_LEVEL": "WARNING",
               "CARELOOM_LOG_FORMAT": "json", "CARELOOM_CONTACT_WINDOW_START_HOUR": "0",
               "CARELOOM_CONTACT_WINDOW_END_HOUR": "24",
               "CARELOOM_PSEUDONYM_SALT": settings.pseudonym_salt.get_secret_value(),
               # The embedded stack encrypts payloads with the state folder's development key; the worker
               # processes reach Temporal by address, so they are given the same key explicitly.
               "CARELOOM_PAYLOAD_KEYS": development_keys(settings.state_dir / DEVELOPMENT_KEY_FILE),
               **({"CARELOOM_DATABASE_URL": settings.database_url} if settings.database_url else {})}
        workers = [WorkerProcess(env, "worker-1"), WorkerProcess(env, "worker-2")]
        server = await serve_adt(ours, client, store, host="127.0.0.1", port=0)
        host, port = server.sockets[0].getsockname()[:2]
        # PV1-4 as a hospital's feed sends it: mostly emergency and urgent admissions, some elective and routine.
        kinds = [ADMISSION_TYPES[n % len(ADMISSION_TYPES)] for n in range(count)]
        messages = [adt("A03", m, v, admission_type=k) for (m, v), k in zip(people, kinds, strict=True)]
        acks: Counter[str] = Counter()
        progress = [0]
        print(f"sending {count} ADT^A03 over {connections} MLLP connections to 2 worker processes ...", flush=True)
        began = time.perf_counter()
        senders = [asyncio.create_task(_send(host, port, messages[i::connections], acks, progress))
                   for i in range(connections)]
        killed = False
        while not all(s.done() for s in senders):
            if not killed and progress[0] >= count // 2:
                workers[0].kill_and_restart()
                killed = True
                print(f"  SIGKILLed and restarted worker-1 after {progress[0]} ACKs", flush=True)
            await asyncio.sleep(0.05)
        acked = time.perf_counter() - began
        for sender in senders:
            sender.exception()  # surface a sender failure
        settled = await _wait_settled(client, queue, count, timeout) + acked
        automated = await _count(client, f"TaskQueue = '{queue}' AND CareloomStatus = 'completed'")
        parked = await _count(client, f"TaskQueue = '{queue}' AND CareloomStatus = 'awaiting_approval'")
        approved, approve_s = await _approve_all(client, settings, store, queue, workers[1], timeout)
        rss = [_rss_mb(w.proc.pid) for w in workers]
        cpu = sum(w.cpu() for w in workers)
        server.close()
        for worker in workers:
            worker.stop()

        ids = [outreach_workflow_id(m, v, settings.pseudonym_salt.get_secret_value()) for m, v in people]
        runs = Counter([e.id async for e in client.list_workflows(f"TaskQueue = '{queue}'")])
        lost = sum(1 for i in ids if i not in runs)
        duplicate_runs = sum(1 for n in runs.values() if n > 1)
        members = {m for m, _ in people}
        repeated = store.db.read(lambda db: db.rows(
            "SELECT member_id FROM resources WHERE resource_type = 'Task' AND content LIKE '%tcm-interactive-contact%' "
            "GROUP BY member_id HAVING count(*) > 1"))
        duplicate_tasks = sum(1 for (member,) in repeated if member in members)
        # Every write tool's resource, by member and type: one discharge per member, so one of each at most.
        written = store.db.read(lambda db: db.rows(
            "SELECT member_id, resource_type, count(*) FROM resources WHERE idempotency_key IS NOT NULL "
            "AND idempotency_key NOT LIKE '%#%' GROUP BY member_id, resource_type"))
        duplicate_writes = sum(n - 1 for member, _, n in written if member in members and n > 1)
        tool_writes = sum(n for member, _, n in written if member in members)
        ledger_entries, ledger_problems = DecisionLedger(store.db).verify()
        events, size = await history_size(client, ids[:50])
        failed_runs = await _count(client, f"TaskQueue = '{queue}' AND ExecutionStatus = 'Failed'")
        unsettled = count - failed_runs - await _count(client, f"TaskQueue = '{queue}' AND CareloomStatus IN "
                                                 f"({', '.join(repr(s) for s in SETTLED)})")

    started_per_s = count / acked
    print(f"\n{count} discharges, {connections} MLLP connections, 2 worker processes (one SIGKILLed mid-way), "
          f"embedded dev server, records on {store.db.dialect}, 2 cores\n")
    print(f"messages acknowledged/s     {count / acked:9.1f}   (ACK codes: {dict(acks)})")
    print(f"{'':28}{'careloom':>10}{'bare':>10}{'ratio':>8}")
    print(f"{'runs started/s':<28}{started_per_s:>10.1f}{bare['started_per_s']:>10.1f}"
          f"{started_per_s / bare['started_per_s']:>8.2f}")
    print(f"{'runs settled/s':<28}{count / settled:>10.1f}{bare['settled_per_s']:>10.1f}"
          f"{count / settled / bare['settled_per_s']:>8.2f}")
    print(f"{'events per run':<28}{events:>10.1f}{bare['events']:>10.1f}{events / bare['events']:>8.2f}")
    print(f"{'history bytes per run':<28}{size:>10.0f}{bare['bytes']:>10.0f}{size / bare['bytes']:>8.2f}")
    print(f"worker CPU per run           {1000 * cpu / count:9.1f} ms (both workers, the killed one included)")
    print(f"worker RSS                   {', '.join(f'{r:.0f} MB' for r in rss)}")
    print(f"completed without a human    {automated / count:9.1%}   ({automated} of {count}; {parked} parked for "
          f"a person before the approvals; PV1-4 mix {dict(Counter(ADMISSION_TYPES))} per {len(ADMISSION_TYPES)})")
    print(f"\nactions approved             {approved}   (every run out of awaiting_approval {approve_s:.0f} s later)")
    print(f"runs lost                    {lost}")
    print(f"runs failed                  {failed_runs}")
    print(f"duplicate runs per key       {duplicate_runs}")
    print(f"duplicate TCM tasks          {duplicate_tasks}")
    print(f"duplicate tool writes        {duplicate_writes}   (of {tool_writes} resources written by tools)")
    print(f"ledger chain                 {ledger_entries} entries, {len(ledger_problems)} problems"
          + "".join(f"\n  {p}" for p in ledger_problems[:5]))
    print(f"messages without ACK         {count - sum(acks.values())}")
    print(f"runs not settled in time     {unsettled}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=1800.0, help="Seconds to wait for runs to settle.")
    parser.add_argument("--database-url", help="A PostgreSQL server (postgresql://USER@HOST:PORT/DB): the store on "
                        "a scratch database there, shared by both worker processes.")
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.connections, args.timeout, args.database_url))
