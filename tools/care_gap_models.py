"""The care-gap read tool's input and result: measure ids, population flags and references (pure models, imported
by workflow code; the activity is :mod:`tools.care_gaps`)."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

__all__ = ["ClosureRecord", "EvaluateGapsInput", "GapReview", "GapStatus", "RecordClosuresInput"]


class EvaluateGapsInput(BaseModel):
    member_id: str
    period_start: date
    period_end: date = Field(description="Inclusive: the last day of the measurement period.")
    measure_ids: list[str] = Field(min_length=1)


class GapStatus(BaseModel):
    """One measure for the member: in its denominator (and not excluded), and whether the gap is open."""

    measure_id: str
    title: str
    in_denominator: bool = Field(description="In the denominator and not excluded: the measure applies.")
    gap_open: bool
    evidence: list[str] = Field(default_factory=list, description="References of the records the engine cited.")


class GapReview(BaseModel):
    period_start: date
    period_end: date
    measures_version: str = Field(description="Ids and versions of the measures evaluated, e.g. cms122@11.0.0.")
    gaps: list[GapStatus]

    @property
    def open_gaps(self) -> list[GapStatus]:
        return [g for g in self.gaps if g.in_denominator and g.gap_open]


class RecordClosuresInput(BaseModel):
    """The gaps a run found closed (``care_gaps.record_closure``, :mod:`tools.gap_closures`, checks them again)."""

    member_id: str
    period_start: date
    period_end: date = Field(description="Inclusive: the measurement period's last day.")
    measure_ids: list[str] = Field(min_length=1, description="The measures the run found closed.")


class ClosureRecord(BaseModel):
    """What the worker recorded: the measures it found closed, and of those the ones after this run's outreach."""

    closed: list[str]
    after_outreach: list[str]
