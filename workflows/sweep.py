"""``DischargeSweepWorkflow``: start outreach for every discharge since the watermark that has no run yet.

Started by the Temporal Schedule ``careloom-discharge-sweep`` (:mod:`feeds.schedule`) or by hand. It pages
through the discharges in the records store (an activity reads them; workflow code never does), starts each
page's runs by id — earliest TCM deadline first, ``concurrency`` at once, idempotent by the runs' business
keys — and continues as new every ``batch`` discharges, carrying its cursor and totals, so its history stays
small at any population size. Runs are started by id, not as child workflows: an outreach run must outlive
the sweep that found it (no parent close policy to get wrong) and may already exist from the ADT feed.

``progress`` (query) shows what it did; ``pause`` and ``resume`` (signals) stop and restart it between
pages; a cancel ends it between pages (each start is atomic: nothing is half-started). When it has covered
everything up to ``until`` with no failed start it advances the watermark there; the next sweep starts from
it, looking ``overlap_hours`` further back for discharges recorded late. A sweep with failures leaves the
watermark where it was, so the next one tries them again. A discharge past its TCM window is started and
counted ``tcm_missed``, never dropped.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from feeds.sweep_activities import (
        FindInput,
        StartBatchInput,
        SweepActivities,
        WatermarkInput,
    )

__all__ = ["DischargeSweepWorkflow", "SweepInput", "SweepProgress"]

_PAGE = 200
_ACTIVITY = {"start_to_close_timeout": timedelta(minutes=10),
             "retry_policy": RetryPolicy(maximum_interval=timedelta(minutes=1))}


class SweepProgress(BaseModel):
    since: datetime | None = None
    until: datetime | None = None
    scanned: int = 0
    looked_at: int = Field(default=0, description="Inpatient discharges found.")
    started: int = 0
    existing: int = 0
    failed: int = 0
    tcm_missed: int = 0
    continued: int = Field(default=0, description="Times this sweep continued as new.")
    cursor: tuple[str, str] | None = None
    paused: bool = False
    done: bool = False
    failures: list[str] = Field(default_factory=list, description="The first failures, for operators.")


class SweepInput(BaseModel):
    since: datetime | None = Field(default=None, description="Start of the window; unset: the watermark (minus "
                                                             "overlap), or now − lookback_days on the first sweep.")
    until: datetime | None = Field(default=None, description="End of the window; unset: the sweep's start time.")
    lookback_days: int = Field(default=30, ge=1, le=365)
    overlap_hours: int = Field(default=24, ge=0, le=24 * 30, description="How far before the watermark to look "
                                                                          "again, for discharges recorded late.")
    batch: int = Field(default=500, ge=1, le=10_000, description="Discharges per run before continuing as new.")
    concurrency: int = Field(default=20, ge=1, le=500)
    advance_watermark: bool = Field(default=True, description="False for a backfill of an explicit window.")
    progress: SweepProgress | None = Field(default=None, description="Carried over by continue-as-new.")


@workflow.defn(name="DischargeSweepWorkflow")
class DischargeSweepWorkflow:
    def __init__(self) -> None:
        self._progress = SweepProgress()
        self._paused = False

    @workflow.run
    async def run(self, data: SweepInput) -> SweepProgress:
        progress = data.progress or SweepProgress()
        self._progress = progress
        if progress.until is None:
            progress.until = data.until or workflow.now()
        if progress.since is None:
            if data.since is not None:
                progress.since = data.since
            else:
                mark = await workflow.execute_activity_method(
                    SweepActivities.read_watermark,
                    WatermarkInput(default_since=progress.until - timedelta(days=data.lookback_days)), **_ACTIVITY)
                progress.since = mark - timedelta(hours=data.overlap_hours)
        handled = 0
        while True:
            await workflow.wait_condition(lambda: not self._paused)
            page = await workflow.execute_activity_method(
                SweepActivities.find_discharges,
                FindInput(since=progress.since, until=progress.until, after=progress.cursor,
                          limit=min(_PAGE, data.batch - handled)), **_ACTIVITY)
            progress.scanned += page.scanned
            progress.looked_at += len(page.discharges)
            if page.discharges:
                result = await workflow.execute_activity_method(
                    SweepActivities.start_batch,
                    StartBatchInput(discharges=page.discharges, concurrency=data.concurrency), **_ACTIVITY)
                progress.started += result.started
                progress.existing += result.existing
                progress.failed += result.failed
                progress.tcm_missed += result.tcm_missed
                progress.failures = (progress.failures + result.failures)[:50]
            progress.cursor = page.next_after
            handled += page.scanned
            if page.next_after is None:
                break
            if handled >= data.batch:
                progress.continued += 1
                workflow.continue_as_new(data.model_copy(update={"progress": progress}))
        if data.advance_watermark and data.since is None and progress.failed == 0:
            await workflow.execute_activity_method(SweepActivities.advance_watermark,
                                                   WatermarkInput(value=progress.until), **_ACTIVITY)
        progress.done = True
        return progress

    @workflow.query(name="progress")
    def progress(self) -> SweepProgress:
        return self._progress.model_copy(update={"paused": self._paused})

    @workflow.signal(name="pause")
    def pause(self) -> None:
        self._paused = True

    @workflow.signal(name="resume")
    def resume(self) -> None:
        self._paused = False
