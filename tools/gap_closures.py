"""``care_gaps.record_closure``: the gaps a care-gap run saw close, and whether its outreach came first, kept in the
records store (where ``careloom gaps report`` counts "closed after careloom's outreach").

When a run's re-evaluation finds gaps closed, the run asks this activity to record them. The worker does not take
the run's word for either fact:

- **closed**: it evaluates each named measure again for the member and period (in the denominator, not excluded,
  gap not open); a measure still open, or no longer applicable, is not recorded;
- **after outreach**: it reads careloom's care-gap contacts with the member in the period up to now, from the
  records store (:func:`gap_outreach`): the reminders (Communication, category care-gap closure), the scheduling
  Tasks and the PCP-notification Tasks, whichever run made them (a reminder folded into another run's contact of
  the day is still outreach). Care-gap outreach is only ever made while a gap is open (the planner plans none
  otherwise), so a gap found closed at a later evaluation closed after it.

One DetectedIssue per closed gap: DEQM ``gapStatus`` ``closed-gap``, careloom's ``closed-after-outreach``
extension, ``evidence`` = the contacts; once per workflow, measure and period (a retry, or a second round's closure
of the same gap, returns the first record). Identifiers only go back to the run.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import structlog
from store.sql_records import SqlCareRecordStore
from tools.care_gap_models import ClosureRecord, RecordClosuresInput
from tools.care_gap_report import CAREGAP_CODE, GAP_STATUS_EXTENSION, GAP_STATUS_SYSTEM, gap_status
from tools.measure_data import member_resources
from tools.quality_measures import MeasureDefinition, MemberResult, evaluate_member, measurement_period

__all__ = ["AFTER_OUTREACH_EXTENSION", "OUTREACH_TASK_KINDS", "closed_after_outreach", "closure_issue", "count_closed_after_outreach", "gap_outreach",
           "record_closures"]

AFTER_OUTREACH_EXTENSION = "urn:careloom:extension/closed-after-outreach"
OUTREACH_TASK_KINDS = frozenset({"gap-closure-scheduling", "pcp-gap-notification"})
"""The Task kinds that are care-gap outreach (a coordinator calls the member; the PCP's office is told)."""
_PROGRAM = "care-gap closure"
_IDS = uuid.UUID("0b5f4f7e-9b1e-4c53-8f53-2f3c5e7a1d10")

log = structlog.get_logger(__name__)


def gap_outreach(store: SqlCareRecordStore, member_id: str, period_start: date, until: datetime) -> list[str]:
    """References of careloom's care-gap contacts with the member from the period's start until ``until``: the
    reminders (Communication, category care-gap closure, sent) and the scheduling and PCP-notification Tasks."""
    since = datetime.combine(period_start, datetime.min.time(), tzinfo=UTC)
    found = []
    for communication in store.find_for_member("Communication", member_id):
        ours = any(c.get("text") == _PROGRAM for c in communication.get("category") or [])
        if ours and communication.get("status") != "entered-in-error" and _within(communication.get("sent"),
                                                                                    since, until):
            found.append(f"Communication/{communication['id']}")
    for task in store.find_for_member("Task", member_id):
        kinds = {c.get("code") for c in (task.get("code") or {}).get("coding") or []}
        if kinds & OUTREACH_TASK_KINDS and task.get("status") != "entered-in-error" and _within(
                task.get("authoredOn"), since, until):
            found.append(f"Task/{task['id']}")
    return found


def _within(when: str | None, since: datetime, until: datetime) -> bool:
    if not when:
        return False
    at = datetime.fromisoformat(when)
    return since <= (at if at.tzinfo else at.replace(tzinfo=UTC)) <= until


def closure_issue(member_id: str, measure: MeasureDefinition, period_start: date, period_end: date, *,
                  workflow_id: str, contacts: list[str], now: datetime) -> dict[str, Any]:
    """The DetectedIssue recording a closed gap (DEQM closed-gap), with whether outreach preceded it."""
    issue: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "id": str(uuid.uuid5(_IDS, f"{workflow_id}|{measure.id}|{period_start}|{period_end}")),
        "extension": [
            {"url": GAP_STATUS_EXTENSION, "valueCodeableConcept": {"coding": [{"system": GAP_STATUS_SYSTEM,
                                                                      "code": "closed-gap"}]}},
            {"url": AFTER_OUTREACH_EXTENSION, "valueBoolean": bool(contacts)},
        ],
        "status": "final", "code": {"coding": [dict(CAREGAP_CODE)]},
        "patient": {"reference": f"Patient/{member_id}"},
        "identifiedDateTime": now.astimezone(UTC).isoformat(timespec="seconds"),
        "author": {"display": "careloom"},
        "detail": f"{measure.id}@{measure.version} care gap closed for {period_start} to {period_end}",
        "identifier": [{"system": "urn:careloom:gap-closure", "value": f"{measure.id}|{period_start}|{period_end}"}],
    }
    if contacts:
        issue["evidence"] = [{"detail": [{"reference": ref} for ref in contacts]}]
    return issue


def closed_after_outreach(store: SqlCareRecordStore, member_id: str, measure_id: str, period_start: date,
                          period_end: date) -> bool:
    """Whether a care-gap run recorded the member's gap for the measure and period as closed after its outreach."""
    value = f"{measure_id}|{period_start}|{period_end}"
    for issue in store.find_for_member("DetectedIssue", member_id):
        if not any(i.get("system") == "urn:careloom:gap-closure" and i.get("value") == value
                   for i in issue.get("identifier") or []):
            continue
        if _after_outreach(issue):
            return True
    return False


def record_closures(store: SqlCareRecordStore, measures: dict[str, MeasureDefinition], workflow_id: str,
                    data: RecordClosuresInput) -> ClosureRecord:
    """Check each named gap closed now, record it once with this workflow's outreach; what was recorded."""
    resources = member_resources(store, data.member_id)
    period = measurement_period(f"{data.period_start.isoformat()}/{data.period_end.isoformat()}")
    now = datetime.now(UTC)
    contacts = gap_outreach(store, data.member_id, data.period_start, now)
    closed, after = [], []
    for measure_id in dict.fromkeys(data.measure_ids):
        measure = measures.get(measure_id)
        if measure is None or not resources:
            continue
        result = evaluate_member(measure, resources, data.member_id, period)
        if result.gap_open or not result.denominator or result.denominator_exclusion:
            continue  # not closed now: the run's word is not enough
        issue = closure_issue(data.member_id, measure, data.period_start, data.period_end,
                              workflow_id=workflow_id, contacts=contacts, now=now)
        stored, _ = store.create_once([issue], f"gap-closure/{workflow_id}/{measure_id}/{data.period_start}")
        closed.append(measure_id)
        if _after_outreach(stored[0]):
            after.append(measure_id)
    log.info("tool.record_gap_closure", workflow_id=workflow_id, closed=len(closed), after_outreach=len(after))
    return ClosureRecord(closed=closed, after_outreach=after)


def _after_outreach(issue: dict[str, Any]) -> bool:
    return any(e.get("url") == AFTER_OUTREACH_EXTENSION and e.get("valueBoolean") is True
               for e in issue.get("extension") or [])


def count_closed_after_outreach(store: SqlCareRecordStore, results: list[MemberResult]) -> dict[str, int]:
    """Per measure: the members whose gap is closed now (:func:`~tools.care_gap_report.gap_status`) and whose
    care-gap run recorded it closed after careloom's outreach (a gap that reopened is not counted)."""
    counts: dict[str, int] = {}
    for result in results:
        counts.setdefault(result.measure_id, 0)
        if gap_status(result) == "closed-gap" and closed_after_outreach(
                store, result.member_id, result.measure_id, result.period_start.date(), result.period_end.date()):
            counts[result.measure_id] += 1
    return counts
