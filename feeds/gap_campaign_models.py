"""What the care-gap campaign's workflow and its activities exchange (identifiers and counts only), the campaign's
input and progress, and the activities' frozen type names: the workflow calls them by name, so it imports no
module that does I/O (the CQL engine, the store, a Temporal client).

The deployment's campaign settings (``CARELOOM_GAP_CAMPAIGN_CRON``, ``_PAGE``, ``_BATCH``, ``_CONCURRENCY`` in
:mod:`runtime.settings`) are written into each campaign's input when it is started or scheduled
(:func:`campaign_input`); the input's own defaults equal the settings' defaults.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field, model_validator

from runtime.settings import Settings

__all__ = ["DEFAULT_BATCH", "DEFAULT_CONCURRENCY", "DEFAULT_PAGE", "EVALUATE_PAGE", "FIRST_FAILURES", "INITIATED_BY",
           "START_RUNS", "CampaignInput", "CampaignProgress", "EvaluatePageInput", "EvaluatePageResult", "MemberGaps",
           "StartRunsInput", "StartRunsResult", "campaign_input"]

EVALUATE_PAGE = "gaps.evaluate_page"
START_RUNS = "gaps.start_runs"

INITIATED_BY = "gap-campaign"
"""Who the campaign's care-gap runs name as their initiator (it may not approve their actions)."""

DEFAULT_PAGE = 200
DEFAULT_BATCH = 2_000
DEFAULT_CONCURRENCY = 20

FIRST_FAILURES = 50
"""How many failures (evaluation errors and refused starts) progress keeps, for operators."""


class MemberGaps(BaseModel):
    """A member with at least one open gap, as history carries them: the member id and the open measures' ids."""

    member_id: str
    measure_ids: list[str] = Field(min_length=1)


class EvaluatePageInput(BaseModel):
    period_start: date
    period_end: date = Field(description="Inclusive: the measurement period's last day.")
    measure_ids: list[str] = Field(default_factory=list, description="Empty: every measure the worker ships.")
    after: str | None = Field(default=None, description="Keyset cursor: the last Patient id already read.")
    limit: int = Field(ge=1, le=10_000)


class EvaluatePageResult(BaseModel):
    open: list[MemberGaps] = Field(description="This page's members with at least one open gap, in id order.")
    evaluated: int = Field(description="Members whose measures were evaluated (errors not included).")
    errors: int = Field(default=0, description="Members whose evaluation failed (engine or record error).")
    failures: list[str] = Field(default_factory=list, description="'Patient/<id>: <error type>' for the first "
                                                                  "members whose evaluation failed.")
    last: str | None = Field(description="Cursor: the last Patient id read; None on an empty page.")
    more: bool = Field(description="Whether there may be more after ``last`` (the page was full).")
    refused: str | None = Field(default=None, description=(
        "Why the campaign cannot evaluate anyone (e.g. a measure id the worker does not ship): it ends with this "
        "as its outcome instead of failing."))

    @property
    def read(self) -> int:
        return self.evaluated + self.errors

    @property
    def with_open_gap(self) -> int:
        return len(self.open)


class StartRunsInput(BaseModel):
    members: list[MemberGaps]
    period_start: date
    period_end: date
    concurrency: int = Field(ge=1, le=500)


class StartRunsResult(BaseModel):
    started: int
    existing: int = Field(description="Members who had a run for the period already: joined, not started again.")
    failed: int
    failures: list[str] = Field(default_factory=list, description="'Patient/<id>: <error>' for each not started.")


class CampaignProgress(BaseModel):
    """What the ``progress`` query and the result show; carried across continue-as-new."""

    period_start: date | None = None
    period_end: date | None = None
    evaluated: int = Field(default=0, description="Members whose measures were evaluated.")
    errors: int = Field(default=0, description="Members whose evaluation failed (counted, named, skipped).")
    open: int = Field(default=0, description="Members with at least one open gap.")
    started: int = Field(default=0, description="Care-gap runs started.")
    existing: int = Field(default=0, description="Members with a run for the period already (joined).")
    failed: int = Field(default=0, description="Starts the server refused.")
    continued: int = Field(default=0, description="Times this campaign continued as new.")
    cursor: str | None = Field(default=None, description="The last Patient id covered.")
    paused: bool = False
    cancelled: bool = False
    done: bool = False
    refused: str | None = Field(default=None, description=(
        "Why the campaign evaluated no one and ended (a measure id the worker does not ship): its outcome."))
    failures: list[str] = Field(default_factory=list, description="The first failures, for operators.")


class CampaignInput(BaseModel):
    period_start: date | None = Field(default=None, description="Unset (with period_end): the calendar year of the "
                                                                "campaign's start, UTC (what a schedule wants).")
    period_end: date | None = Field(default=None, description="Inclusive: the measurement period's last day.")
    measure_ids: list[str] = Field(default_factory=list, description="Empty: every shipped measure.")
    page: int = Field(default=DEFAULT_PAGE, ge=1, le=10_000, description="Members evaluated per activity.")
    batch: int = Field(default=DEFAULT_BATCH, ge=1, le=100_000,
                       description="Members per run before continuing as new.")
    concurrency: int = Field(default=DEFAULT_CONCURRENCY, ge=1, le=500, description="Run starts in flight at once.")
    progress: CampaignProgress | None = Field(default=None, description="Carried over by continue-as-new.")

    @model_validator(mode="after")
    def _period(self) -> CampaignInput:
        if (self.period_start is None) != (self.period_end is None):
            raise ValueError("give both period_start and period_end, or neither (the current calendar year)")
        if self.period_start and self.period_end and self.period_end < self.period_start:
            raise ValueError(f"period_end {self.period_end} is before period_start {self.period_start}")
        return self


def campaign_input(settings: Settings, *, period_start: date | None = None, period_end: date | None = None,
                   measure_ids: list[str] | None = None, page: int | None = None, batch: int | None = None,
                   concurrency: int | None = None) -> CampaignInput:
    """A campaign's input with the deployment's settings (``CARELOOM_GAP_CAMPAIGN_*``) where no option is given."""
    return CampaignInput(period_start=period_start, period_end=period_end, measure_ids=measure_ids or [],
                         page=page or settings.gap_campaign_page, batch=batch or settings.gap_campaign_batch,
                         concurrency=concurrency or settings.gap_campaign_concurrency)
