"""Counting runs from Temporal visibility into the gauges workflow code cannot fill (no I/O in workflows): runs
by program and status, runs waiting per queue and role, runs past their SLA."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import get_args

import structlog
from temporalio.client import Client

from runtime.metrics import PENDING_BY_QUEUE, PENDING_BY_ROLE, RUNS, SLA_OVERDUE
from runtime.search_attributes import FINAL_STATUSES, RunStatus
from runtime.settings import Settings
from workflows.programs import PROGRAMS

__all__ = ["VisibilityGauges"]

log = structlog.get_logger(__name__)


class VisibilityGauges:
    """Counts runs from Temporal visibility into the gauges, every ``interval`` seconds."""

    def __init__(self, client: Client, settings: Settings, *, interval: float = 30.0) -> None:
        self.client = client
        self.settings = settings
        self.interval = interval

    async def refresh(self) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for program in PROGRAMS:
            kind = f"WorkflowType = '{program.workflow_type}'"
            for status in get_args(RunStatus):
                # A run stopped from outside (terminated, failed, timed out) keeps its last status word: an open
                # status only counts running runs.
                running = "" if status in FINAL_STATUSES else " AND ExecutionStatus = 'Running'"
                found = await self.client.count_workflows(f"{kind} AND CareloomStatus = '{status}'{running}")
                RUNS.labels(program.name, status).set(found.count)
            overdue = await self.client.count_workflows(
                f"{kind} AND ExecutionStatus = 'Running' AND CareloomSlaDeadline < '{now}'")
            SLA_OVERDUE.labels(program.name).set(overdue.count)
        queues = {q for p in PROGRAMS for q in p.configured_policy(self.settings).approvals.queues}
        for queue in sorted(queues):
            found = await self.client.count_workflows(f"ExecutionStatus = 'Running' AND CareloomQueues = '{queue}'")
            PENDING_BY_QUEUE.labels(queue).set(found.count)
        for role in ("care_coordinator", "rn", "md"):
            found = await self.client.count_workflows(
                f"ExecutionStatus = 'Running' AND CareloomApprovalRoles = '{role}'")
            PENDING_BY_ROLE.labels(role).set(found.count)

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as err:  # noqa: BLE001 - a visibility hiccup never stops the worker
                log.warning("metrics.visibility_failed", error=type(err).__name__)
            await asyncio.sleep(self.interval)
