"""What the discharge sweep's workflow and its activities exchange (identifiers only), and the activities' frozen
type names: the workflow calls them by name, so it imports no module that does I/O."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

__all__ = ["ADVANCE_WATERMARK", "FIND_DISCHARGES", "READ_WATERMARK", "START_DISCHARGES", "DischargeRef", "FindInput",
           "FindResult", "StartBatchInput", "StartBatchResult", "WatermarkInput"]

FIND_DISCHARGES = "feeds.find_discharges"
START_DISCHARGES = "feeds.start_discharges"
READ_WATERMARK = "feeds.read_sweep_watermark"
ADVANCE_WATERMARK = "feeds.advance_sweep_watermark"


class DischargeRef(BaseModel):
    """A discharge as history carries it: identifiers only (the start activity reads the rest from the store)."""

    member_id: str
    encounter_id: str


class FindInput(BaseModel):
    since: datetime
    until: datetime
    after: tuple[str, str] | None = Field(default=None, description="Keyset cursor: (period.end, encounter id).")
    limit: int = Field(ge=1, le=10_000)


class FindResult(BaseModel):
    discharges: list[DischargeRef] = Field(description="This page's discharges, earliest TCM deadline first.")
    scanned: int = Field(description="Encounters read (inpatient discharges or not).")
    last: tuple[str, str] | None = Field(description="Cursor of the last encounter read; None on an empty page.")
    more: bool = Field(description="Whether there may be more after ``last`` (the page was full).")


class StartBatchInput(BaseModel):
    discharges: list[DischargeRef]
    concurrency: int = Field(ge=1, le=500)


class StartBatchResult(BaseModel):
    started: int
    existing: int
    failed: int
    skipped: int = Field(default=0, description="Not started: no longer a discharge (deleted, cancelled) when "
                         "started, or held by the screen (feeds.screening: implausible stay, a deceased "
                         "member's earlier stay, coverage ended since).")
    tcm_missed: int
    failures: list[str] = Field(default_factory=list, description="'Encounter/<id>: <error>' for each not started.")
    held: list[str] = Field(default_factory=list, description="'Encounter/<id> (<reason>)' for each held by the "
                            "screen (the first 50).")


class WatermarkInput(BaseModel):
    value: datetime | None = Field(default=None, description="The new watermark (advance_watermark).")
