"""New clinical data reach the care-gap runs: the ``recheck`` signal for the members an import changed.

A care-gap run re-evaluates its member's gaps on its own weekly clock; new data (a lab result, a procedure, a
visit) should not wait a week. After ``careloom import --recheck-gaps``, every member with measure data in the import
(:data:`tools.measure_data.MEASURE_TYPES`: Condition, Encounter, Observation, Procedure) gets ``recheck`` sent to their care-gap run for the current calendar year (the campaign's default
period), addressed by its business key (:func:`workflows.care_gap_client.care_gap_workflow_id`): no visibility
query, one signal per member, ``concurrency`` at once. A member with no running run for the year is counted,
not an error. A run with another measurement period picks the data up on its weekly clock.

The signal carries nothing; the run reads the records store again, so a forged or repeated signal costs one
evaluation and can close nothing the records do not close.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from workflows.care_gap import CareGapWorkflow
from workflows.care_gap_client import care_gap_workflow_id

__all__ = ["RecheckReport", "recheck_gaps"]


@dataclass
class RecheckReport:
    signalled: int = 0
    """Members whose running care-gap run was asked to re-evaluate."""
    no_run: int = 0
    """Members without a running care-gap run for the year (none started, or it has ended)."""
    failed: list[str] = field(default_factory=list)
    """'Patient/<id>: <error type>' for signals the server refused otherwise."""

    def as_dict(self) -> dict[str, object]:
        return {"signalled": self.signalled, "no_run": self.no_run, "failed": self.failed}


async def recheck_gaps(client: Client, member_ids: Iterable[str], *, salt: str, today: date,
                       concurrency: int = 20) -> RecheckReport:
    """Send ``recheck`` to each member's care-gap run for ``today``'s calendar year; what happened."""
    start, end = date(today.year, 1, 1), date(today.year, 12, 31)
    report = RecheckReport()
    gate = asyncio.Semaphore(concurrency)

    async def one(member_id: str) -> None:
        handle = client.get_workflow_handle(care_gap_workflow_id(member_id, start, end, salt))
        async with gate:
            try:
                await handle.signal(CareGapWorkflow.recheck)
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:  # no run, or it has closed
                    report.no_run += 1
                else:
                    report.failed.append(f"Patient/{member_id}: {err.status.name if err.status else 'RPCError'}")
                return
        report.signalled += 1

    await asyncio.gather(*(one(m) for m in dict.fromkeys(member_ids)))
    return report
