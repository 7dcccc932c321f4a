"""The gauges workflow code cannot fill (no I/O in workflows), without a visibility storm.

- Approvals waiting (runs per queue, per role) and runs past their SLA deadline come from the approvals
  projection (:mod:`store.approval_items`): three grouped SQL queries, no Temporal call, in every process.
- Runs by program and status come from Temporal visibility, counted by **one** process per deployment: the
  holder of the ``run-counts`` lease in the records database (:class:`store.run_counts.RunCounts`) counts and
  shares the counts there; every other process reads them. A production frontend allows 10 visibility requests
  a second per namespace; one poller's few dozen counts every ``interval`` leave that budget to the operators.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import get_args

import structlog
from temporalio.client import Client

from runtime.metrics import PENDING_BY_QUEUE, PENDING_BY_ROLE, RUNS, SLA_OVERDUE
from runtime.search_attributes import FINAL_STATUSES, RunStatus
from runtime.settings import Settings
from store.approval_items import ApprovalItems
from store.database import Database
from store.run_counts import RunCounts
from workflows.programs import PROGRAMS

__all__ = ["LEASE", "RunGauges"]

LEASE = "run-counts"
_ROLES = ("care_coordinator", "rn", "md")

log = structlog.get_logger(__name__)


class RunGauges:
    """Fills the run and approval gauges every ``interval`` seconds."""

    def __init__(self, client: Client, settings: Settings, db: Database, *, interval: float = 30.0,
                 holder: str | None = None) -> None:
        self.client = client
        self.settings = settings
        self.items = ApprovalItems(db)
        self.counts = RunCounts(db)
        self.interval = interval
        self.holder = holder or f"worker-{uuid.uuid4().hex[:12]}"
        self.visibility_calls = 0
        """Visibility requests this process made (the lease holder's only)."""

    async def refresh(self) -> None:
        now = datetime.now(UTC)
        queues = {q for p in PROGRAMS for q in p.configured_policy(self.settings).approvals.queues}
        by_queue, by_role, overdue = await asyncio.to_thread(self.items.gauges, now)
        for queue in sorted(queues | set(by_queue)):
            PENDING_BY_QUEUE.labels(queue).set(by_queue.get(queue, 0))
        for role in _ROLES:
            PENDING_BY_ROLE.labels(role).set(by_role.get(role, 0))
        for program in PROGRAMS:
            SLA_OVERDUE.labels(program.name).set(overdue.get(program.workflow_type, 0))
        ttl = timedelta(seconds=self.interval * 3)
        if await asyncio.to_thread(self.counts.take_lease, LEASE, self.holder, ttl, now):
            await asyncio.to_thread(self.counts.save, await self._count_runs(), now)
        for program, status, count in await asyncio.to_thread(self.counts.load):
            RUNS.labels(program, status).set(count)

    async def _count_runs(self) -> list[tuple[str, str, int]]:
        found = []
        for program in PROGRAMS:
            kind = f"WorkflowType = '{program.workflow_type}'"
            for status in get_args(RunStatus):
                # A run stopped from outside (terminated, failed, timed out) keeps its last status word: an open
                # status only counts running runs.
                running = "" if status in FINAL_STATUSES else " AND ExecutionStatus = 'Running'"
                counted = await self.client.count_workflows(f"{kind} AND CareloomStatus = '{status}'{running}")
                self.visibility_calls += 1
                found.append((program.name, status, counted.count))
        return found

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as err:  # noqa: BLE001 - a visibility or database hiccup never stops the worker
                log.warning("metrics.gauges_failed", error=type(err).__name__)
            await asyncio.sleep(self.interval)
