"""``DischargeSweepWorkflow``: start outreach for every discharge since the watermark that has no run yet.

Started by the Temporal Schedule ``careloom-discharge-sweep`` (:mod:`feeds.schedule`) or by hand. It pages
through the discharges in the records store (an activity reads them; workflow code never does), starts each
page's runs by id — earliest TCM deadline first, ``concurrency`` at once, idempotent by the runs' business
keys — and continues as new every ``batch`` encounters, carrying its cursor, totals and pause state, so its
history stays small at any population size.

Runs are started by id (an activity holding a Temporal client calls
:func:`feeds.discharges.start_discharges`), not as child workflows: as children every outreach run would
have the sweep as its parent, and the parent close policy would decide what happens to weeks-long runs when
a sweep that lasts minutes closes, is cancelled or continues as new; the ADT listener and ``careloom import``
start the same runs without a parent. Started by id, a run is independent of whoever found it, and the
business-key workflow id makes a second start (a retried activity, the next sweep, the ADT feed) a no-op.

``progress`` (query) shows what it did; ``pause`` and ``resume`` (signals) stop and restart it between
pages. A cancel ends it after the page in flight: that page's starts finish and are counted, no new page
is started, and the run closes as cancelled (each start is one atomic StartWorkflowExecution: nothing is
half-started). When it has covered everything up to ``until`` with no failed start it advances the
watermark there; the next sweep starts from it, looking ``overlap_hours`` further back for discharges
recorded late. A sweep with failures leaves the watermark where it was, so the next one tries them again.
A discharge past its TCM window is started and counted ``tcm_missed``, never dropped.

History holds identifiers and counts only: member and encounter ids, the keyset cursor, totals — never a
record.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from feeds.sweep_models import (
        ADVANCE_WATERMARK,
        FIND_DISCHARGES,
        READ_WATERMARK,
        START_DISCHARGES,
        FindInput,
        FindResult,
        StartBatchInput,
        StartBatchResult,
        WatermarkInput,
    )

__all__ = ["DischargeSweepWorkflow", "SweepInput", "SweepProgress"]

_ACTIVITY = {"start_to_close_timeout": timedelta(minutes=10),
             "retry_policy": RetryPolicy(maximum_interval=timedelta(minutes=1))}


class SweepProgress(BaseModel):
    """What the ``progress`` query and the result show; carried across continue-as-new."""

    since: datetime | None = Field(default=None, description="Start of the window swept.")
    until: datetime | None = Field(default=None, description="End of the window: the new watermark.")
    scanned: int = Field(default=0, description="Encounters read (inpatient discharges or not).")
    looked_at: int = Field(default=0, description="Inpatient discharges found.")
    started: int = 0
    existing: int = Field(default=0, description="Discharges that had a run already (ADT, import, a sweep).")
    failed: int = Field(default=0, description="Starts the server refused; the watermark stays for them.")
    skipped: int = Field(default=0, description="Found, then no longer a discharge when started.")
    tcm_missed: int = Field(default=0, description="Started past their TCM contact deadline (flagged, started).")
    continued: int = Field(default=0, description="Times this sweep continued as new.")
    cursor: tuple[str, str] | None = Field(default=None, description="(period end, encounter id) of the last "
                                                                     "encounter covered.")
    paused: bool = False
    cancelled: bool = False
    watermark_advanced: bool = False
    done: bool = False
    failures: list[str] = Field(default_factory=list, description="The first failures, for operators.")


class SweepInput(BaseModel):
    since: datetime | None = Field(default=None, description="The watermark: discharges ending at or after it "
                                   "are swept. Unset: the stored watermark (minus overlap_hours), or now − "
                                   "lookback_days on the first sweep.")
    until: datetime | None = Field(default=None, description="End of the window; unset: the sweep's start time.")
    lookback_days: int = Field(default=30, ge=1, le=365)
    overlap_hours: int = Field(default=24, ge=0, le=24 * 30, description="How far before the watermark to look "
                                                                          "again, for discharges recorded late.")
    batch: int = Field(default=500, ge=1, le=10_000, description="Encounters per run before continuing as new.")
    page: int = Field(default=200, ge=1, le=10_000, description="Encounters read (and started) per activity.")
    concurrency: int = Field(default=20, ge=1, le=500)
    advance_watermark: bool = Field(default=True, description="False for a backfill of an explicit window.")
    progress: SweepProgress | None = Field(default=None, description="Carried over by continue-as-new.")


def _add(progress: SweepProgress, result: StartBatchResult) -> None:
    progress.started += result.started
    progress.existing += result.existing
    progress.failed += result.failed
    progress.skipped += result.skipped
    progress.tcm_missed += result.tcm_missed
    progress.failures = (progress.failures + result.failures)[:50]


@workflow.defn(name="DischargeSweepWorkflow")
class DischargeSweepWorkflow:
    @workflow.init
    def __init__(self, data: SweepInput) -> None:
        self._progress = data.progress.model_copy() if data.progress else SweepProgress()
        self._paused = self._progress.paused  # a pause survives continue-as-new

    @workflow.run
    async def run(self, data: SweepInput) -> SweepProgress:
        progress = self._progress
        if progress.until is None:
            progress.until = data.until or workflow.now()
        if progress.since is None:
            if data.since is not None:
                progress.since = data.since
            else:
                mark = await workflow.execute_activity(
                    READ_WATERMARK, WatermarkInput(), result_type=datetime | None, **_ACTIVITY)
                progress.since = (progress.until - timedelta(days=data.lookback_days) if mark is None
                                  else mark - timedelta(hours=data.overlap_hours))
        handled = 0
        while True:
            await workflow.wait_condition(lambda: not self._paused)
            page = await workflow.execute_activity(
                FIND_DISCHARGES, FindInput(since=progress.since, until=progress.until, after=progress.cursor,
                                           limit=min(data.page, data.batch - handled)),
                result_type=FindResult, **_ACTIVITY)
            progress.scanned += page.scanned
            progress.looked_at += len(page.discharges)
            if page.discharges:
                starting = workflow.start_activity(
                    START_DISCHARGES, StartBatchInput(discharges=page.discharges, concurrency=data.concurrency),
                    result_type=StartBatchResult, **_ACTIVITY)
                try:
                    result = await asyncio.shield(starting)
                except asyncio.CancelledError:
                    # Cancelled with starts in flight: let them finish and count them, then end (no new page).
                    _add(progress, await starting)
                    progress.cursor, progress.cancelled = page.last or progress.cursor, True
                    workflow.logger.info("sweep cancelled after the page in flight")
                    raise
                _add(progress, result)
            progress.cursor = page.last or progress.cursor
            handled += page.scanned
            if not page.more:
                break
            if handled >= data.batch:
                progress.continued += 1
                progress.paused = self._paused
                workflow.continue_as_new(data.model_copy(update={"progress": progress}))
        if data.advance_watermark and data.since is None and progress.failed == 0:
            await workflow.execute_activity(ADVANCE_WATERMARK, WatermarkInput(value=progress.until),
                                            result_type=datetime, **_ACTIVITY)
            progress.watermark_advanced = True
        progress.done = True
        return progress

    @workflow.query(name="progress")
    def progress(self) -> SweepProgress:
        return self._progress.model_copy(update={"paused": self._paused})

    @workflow.signal(name="pause")
    def pause(self) -> None:
        """Start no new page until ``resume`` (the page in flight finishes)."""
        self._paused = True

    @workflow.signal(name="resume")
    def resume(self) -> None:
        self._paused = False
