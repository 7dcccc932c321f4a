"""``care_gaps.evaluate``: a member's open and closed care gaps, from the records store, for one measurement period.

The care-gap closure program's read tool (and ``care_gaps.record_closure``, :mod:`tools.gap_closures`). Inside the activity the member's records are read from the store
(:func:`tools.measure_data.member_resources`) and every measure of the run is evaluated by the CQL engine
(:func:`tools.quality_measures.evaluate_member`); the run gets measure ids, population flags and resource
references only (no record, no value), so its history holds no clinical data.

A run evaluates again after new data arrive (an import, a claim, an observation: the ``recheck`` signal) and on
its own clock; a gap the new data close is closed in the next review.
"""

from __future__ import annotations

import structlog
from temporalio import activity

from store.sql_records import SqlCareRecordStore
from tools.care_gap_models import ClosureRecord, EvaluateGapsInput, GapReview, GapStatus, RecordClosuresInput
from tools.errors import tool_error
from tools.gap_closures import record_closures
from tools.measure_data import member_resources
from tools.quality_measures import MeasureDefinition, evaluate_member, measurement_period

__all__ = ["MEMBER_NOT_FOUND", "UNKNOWN_MEASURE", "CareGapTools", "measures_version"]

MEMBER_NOT_FOUND = "MemberNotFound"
UNKNOWN_MEASURE = "UnknownMeasure"

log = structlog.get_logger(__name__)


def measures_version(measures: list[MeasureDefinition]) -> str:
    return ",".join(f"{m.id}@{m.version}" for m in measures)


class CareGapTools:
    """The care-gap read tool, bound to one store and the shipped (or configured) measures."""

    def __init__(self, store: SqlCareRecordStore, measures: list[MeasureDefinition]) -> None:
        self._store = store
        self._measures = {m.id: m for m in measures}

    def activities(self) -> list[object]:
        return [self.evaluate_gaps, self.record_closure]

    @activity.defn(name="care_gaps.evaluate")
    def evaluate_gaps(self, data: EvaluateGapsInput) -> GapReview:
        unknown = [m for m in data.measure_ids if m not in self._measures]
        if unknown:
            raise tool_error(UNKNOWN_MEASURE, f"no measure {', '.join(unknown)} among {', '.join(self._measures)}: "
                                              "the measures changed since the run started; review it by hand")
        resources = member_resources(self._store, data.member_id)
        if not resources:
            raise tool_error(MEMBER_NOT_FOUND, f"no Patient/{data.member_id} in the care records store")
        period = measurement_period(f"{data.period_start.isoformat()}/{data.period_end.isoformat()}")
        measures = [self._measures[m] for m in data.measure_ids]
        gaps = []
        for measure in measures:
            result = evaluate_member(measure, resources, data.member_id, period)
            gaps.append(GapStatus(measure_id=measure.id, title=measure.title,
                                  in_denominator=result.denominator and not result.denominator_exclusion,
                                  gap_open=result.gap_open, evidence=result.evidence))
        review = GapReview(period_start=data.period_start, period_end=data.period_end,
                           measures_version=measures_version(measures), gaps=gaps)
        log.info("tool.evaluate_gaps", workflow_id=activity.info().workflow_id, measures=len(gaps),
                 open=len(review.open_gaps))
        return review

    @activity.defn(name="care_gaps.record_closure")
    def record_closure(self, data: RecordClosuresInput) -> ClosureRecord:
        """Record the gaps the run found closed, each checked again, with whether this workflow's outreach came
        first (:mod:`tools.gap_closures`); the workflow id is the activity's own, never the input's."""
        return record_closures(self._store, self._measures, activity.info().workflow_id, data)
