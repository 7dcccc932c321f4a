"""``CareGapCampaignWorkflow``: evaluate every member's care gaps for a period; start a run for each open one.

The care-gap closure program's population step, run by the Temporal Schedule ``careloom-gap-campaign``
(:func:`feeds.schedule.create_gap_campaign_schedule`, monthly) or by hand (``careloom gaps campaign start``). It
pages through the members the records store holds a Patient for, in Patient-id order (an activity reads and
evaluates them with the CQL measures in memory; workflow code never does), and starts a
:class:`~workflows.care_gap.CareGapWorkflow` for each member with at least one open gap — ``concurrency`` at once,
by id, idempotent by the run's business key (member + period): a member who has a run for the period already is
counted ``existing``, never started twice, so a second campaign (next month's, a retried activity) only starts
the members whose gaps opened since. It continues as new every ``batch`` members, carrying its cursor, totals and
pause state, so its history stays small at any population size.

Runs are started by id, not as child workflows, for the reason the discharge sweep gives (:mod:`feeds.sweep`): a
care-gap run monitors for months and must not depend on a campaign that lasts minutes.

``progress`` (query) shows what it did; ``pause`` and ``resume`` (signals) stop and restart it between pages. A
cancel ends it after the page in flight: that page's evaluation and starts finish and are counted, no new page is
started, and the run closes as cancelled. A member whose evaluation fails (an engine error, a record the engine
cannot read) is counted in ``errors`` and named in ``failures``; the campaign goes on.

History holds identifiers and counts only: member and measure ids, the Patient-id cursor, totals — never a
record or a value.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from feeds.gap_campaign_models import (
        EVALUATE_PAGE,
        FIRST_FAILURES,
        START_RUNS,
        CampaignInput,
        CampaignProgress,
        EvaluatePageInput,
        EvaluatePageResult,
        StartRunsInput,
        StartRunsResult,
    )

__all__ = ["CampaignInput", "CampaignProgress", "CareGapCampaignWorkflow"]

_ACTIVITY = {"start_to_close_timeout": timedelta(minutes=10),
             "retry_policy": RetryPolicy(maximum_interval=timedelta(minutes=1))}


def _add_page(progress: CampaignProgress, page: EvaluatePageResult) -> None:
    progress.evaluated += page.evaluated
    progress.errors += page.errors
    progress.open += page.with_open_gap
    progress.failures = (progress.failures + page.failures)[:FIRST_FAILURES]


def _add_starts(progress: CampaignProgress, result: StartRunsResult) -> None:
    progress.started += result.started
    progress.existing += result.existing
    progress.failed += result.failed
    progress.failures = (progress.failures + result.failures)[:FIRST_FAILURES]


@workflow.defn(name="CareGapCampaignWorkflow")
class CareGapCampaignWorkflow:
    @workflow.init
    def __init__(self, data: CampaignInput) -> None:
        self._progress = data.progress.model_copy() if data.progress else CampaignProgress()
        self._paused = self._progress.paused  # a pause survives continue-as-new

    @workflow.run
    async def run(self, data: CampaignInput) -> CampaignProgress:
        progress = self._progress
        if progress.period_start is None or progress.period_end is None:
            year = workflow.now().year
            progress.period_start = data.period_start or date(year, 1, 1)
            progress.period_end = data.period_end or date(year, 12, 31)
        handled = 0
        while True:
            await workflow.wait_condition(lambda: not self._paused)
            # The page (its evaluation, then its starts) is shielded: a cancel lets it finish and be counted.
            page_task = asyncio.ensure_future(self._page(data, min(data.page, data.batch - handled)))
            try:
                page = await asyncio.shield(page_task)
            except asyncio.CancelledError:
                await page_task
                progress.cancelled = True
                workflow.logger.info("gap campaign cancelled after the page in flight")
                raise
            handled += page.read
            if page.refused is not None:  # nothing can be evaluated: the outcome says why (never a FAILED run)
                progress.refused = page.refused
                break
            if not page.more:
                break
            if handled >= data.batch:
                progress.continued += 1
                progress.paused = self._paused
                workflow.continue_as_new(data.model_copy(update={"progress": progress}))
        progress.done = True
        return progress

    async def _page(self, data: CampaignInput, limit: int) -> EvaluatePageResult:
        """Evaluate the next page of members, start the runs of those with an open gap; progress counts both."""
        progress = self._progress
        assert progress.period_start is not None and progress.period_end is not None  # set by run()
        page = await workflow.execute_activity(
            EVALUATE_PAGE, EvaluatePageInput(period_start=progress.period_start, period_end=progress.period_end,
                                             measure_ids=data.measure_ids, after=progress.cursor, limit=limit),
            result_type=EvaluatePageResult, **_ACTIVITY)
        _add_page(progress, page)
        if page.open:
            result = await workflow.execute_activity(
                START_RUNS, StartRunsInput(members=page.open, period_start=progress.period_start,
                                           period_end=progress.period_end, concurrency=data.concurrency),
                result_type=StartRunsResult, **_ACTIVITY)
            _add_starts(progress, result)
        progress.cursor = page.last or progress.cursor
        return page

    @workflow.query(name="progress")
    def progress(self) -> CampaignProgress:
        return self._progress.model_copy(update={"paused": self._paused})

    @workflow.signal(name="pause")
    def pause(self) -> None:
        """Start no new page until ``resume`` (the page in flight finishes)."""
        self._paused = True

    @workflow.signal(name="resume")
    def resume(self) -> None:
        self._paused = False
