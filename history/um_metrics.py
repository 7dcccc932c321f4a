"""The CMS-0057-F public prior-authorization metrics for one calendar year, computed from careloom's own runs.

What the rule asks a payer to post each year (42 CFR 422.122(c) and the Medicaid, CHIP and QHP equivalents;
first report due 31 March 2026 for 2025), aggregated over all items and services: the share of requests
approved, denied, approved after appeal, and approved after the review time frame was extended, and the average
and median time from request to determination, for standard and for expedited requests. Here every figure is
given for each priority separately, with the counts behind it.

**The source of truth is the run's history, not the decision ledger.** The ledger
(:class:`store.ledger.DecisionLedger`) records what people did about approval items: requested, signed off,
approved, edited, expired. It holds no priority, no receipt time and no determination outcome (an MD's
``approved`` entry approves a *proposed* determination, which may be a denial), and a request the rules
approve without a human writes no decision entry at all, so the ledger cannot count requests, let alone
classify them. The ``PriorAuthWorkflow`` result (:class:`workflows.prior_auth_models.PriorAuthResult`) has the
four facts the report needs, written by the run that issued the ClaimResponse: ``priority``, ``received_at`` (the
start of the CMS clock), ``determination`` and ``decided_at``. A run with no result (failed, terminated,
cancelled, still open) is counted from its input (:class:`tools.pas_models.PriorAuthSubmission`) as a request
with no determination. Temporal keeps closed histories for its retention period only (Temporal Cloud: 90 days
at most), so a whole year's report is made from exported histories (``careloom history export``). The ledger,
kept six years, is used for what it can say: given its entries, the report counts the prior-authorization
requests the ledger has an entry for in the year (by their first entry's time) but no history among the runs
read (``ledger_only``), and says so in a note: the figures then leave those requests out, and the fix is to
export their histories. It cannot see requests decided without a human, so the check is a floor, not a count.

**Definitions** (each printed with the report):

* A request belongs to the year in which it was **received** (``received_at``, UTC): 1 January 00:00:00 UTC
  inclusive to 1 January of the next year exclusive, whenever it was decided.
* One request, one run: histories of the same workflow id count once (the latest run).
* approved / denied / partially approved: the determination of the ClaimResponse issued (X12 A1 / A3 / A2). A
  partial approval is counted as neither approved nor denied, and shown on its own line.
* pended: the ClaimResponse asked the provider for documentation (A4) and the run ended without another (the
  provider did not answer in time, or the request was withdrawn); that is not a determination. A pended request
  the provider answered is reviewed again in the same run and counted by the determination it then got.
* extended then approved: approved after a pend extended the review time frame (``extended_from`` set: the
  determination was due later than the request's own clock because the plan asked for documentation).
* approved after appeal: a reconsideration run (``appeal_of`` set) issued an approval. It is counted in the year
  and priority of the request appealed (the request's own receipt, from the run's input), as a share of the
  year's requests; the request itself stays counted by its first determination (a denial overturned on appeal
  is a denial and an approval after appeal). Reconsideration runs are not requests; ``appeals`` counts them.
* no determination: the run ended (or is still open) without a ClaimResponse: an approval expired, the run
  failed or was withdrawn.
* Percentages are of all requests of that priority received in the year; ``None`` when there were none.
* Time to determination: ``decided_at - received_at`` in hours, over approved, denied and partially approved
  requests only (``decided_at``: when the run recorded its issued ClaimResponse, the instant its ``overdue``
  flag is judged at).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from history.events import RunRecord
from store.ledger_entries import LedgerEntry
from workflows.programs import PRIOR_AUTH

__all__ = ["DEFINITIONS", "PriorityFigures", "UmMetricsReport", "um_metrics", "year_bounds"]

Priority = Literal["standard", "expedited"]
_DECIDED = {"approve": "approved", "deny": "denied", "partial": "partially_approved"}


DEFINITIONS = (
    "A request counts in the year it was received (received_at, UTC: 1 January 00:00 inclusive to 1 January of "
    "the next year exclusive), whenever it was decided.",
    "Percentages are of all requests of that priority received in the year.",
    "A partial approval counts as neither approved nor denied. A pend (documentation requested) is not a "
    "determination: a pended request the provider answered counts by the determination it then got; one never "
    "answered stays pended.",
    "Approved after an extended time frame: approved after a pend extended the time frame for documentation.",
    "Approved after appeal: a reconsideration approved the request; counted in the year and priority of the "
    "request appealed, which also stays counted by its first determination. Reconsiderations are not requests.",
    "Time to determination is decided_at - received_at, in hours, over approved, denied and partially approved "
    "requests.",
)


def year_bounds(year: int) -> tuple[datetime, datetime]:
    """[start, end) of a calendar year in UTC."""
    if not 1 <= year < 9999:
        raise ValueError(f"--year {year} is not a calendar year; give a year such as 2026")
    return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)


class PriorityFigures(BaseModel):
    """The figures for one priority (standard or expedited)."""

    priority: Priority
    requests: int = Field(description="Requests of this priority received in the year.")
    approved: int
    denied: int
    partially_approved: int
    pended: int = Field(description="Documentation requested (X12 A4); not a determination.")
    no_determination: int = Field(description="No ClaimResponse: expired, failed, withdrawn or still open.")
    approved_after_appeal: int = Field(default=0, description="Requests a reconsideration approved.")
    extended_then_approved: int = Field(default=0, description="Approved after a pend extended the time frame.")
    appeals: int = Field(default=0, description="Reconsiderations of this year's requests read (any outcome).")
    percent_approved: float | None
    percent_denied: float | None
    percent_partially_approved: float | None
    percent_approved_after_appeal: float | None
    percent_extended_then_approved: float | None
    decided: int = Field(description="Requests with a determination (approved, denied or partially approved): "
                                     "the ones the times are over.")
    average_hours: float | None = Field(description="Mean time from receipt to determination; None if none.")
    median_hours: float | None = Field(description="Median time from receipt to determination; None if none.")


class UmMetricsReport(BaseModel):
    """The CMS-0057-F prior-authorization metrics of one calendar year."""

    year: int
    period_start: datetime
    period_end: datetime = Field(description="Exclusive.")
    source: str = Field(description="Where the runs came from: a histories folder or the Temporal namespace.")
    standard: PriorityFigures
    expedited: PriorityFigures
    runs_read: int = Field(description="Prior-authorization runs read (after one per workflow id).")
    outside_year: int = Field(description="Of those, runs of requests received in another year (not counted).")
    other_programs: int = Field(description="Histories of other programs, skipped.")
    duplicate_runs: int = Field(description="Older runs of a workflow id already counted, skipped.")
    ledger_checked: bool = Field(default=False, description="The decision ledger was compared with the runs read.")
    ledger_only: int = Field(default=0, description="Prior-authorization requests the ledger has an entry for in "
                                                    "the year but the runs read do not include: left out.")
    notes: list[str] = Field(default_factory=lambda: list(DEFINITIONS))


@dataclass(frozen=True)
class _Request:
    priority: Priority
    received_at: datetime
    outcome: str  # approved, denied, partially_approved, pended, no_determination
    hours: float | None
    extended: bool = False


def _request(record: RunRecord) -> _Request:
    result = record.result
    if result is None:  # failed, terminated, cancelled or still open: what was asked, and no answer
        submission = record.input.submission
        return _Request(submission.priority, submission.received_at, "no_determination", None)
    outcome = _DECIDED.get(result.determination or "", "pended" if result.determination == "pend"
                           else "no_determination")
    hours = ((result.decided_at - result.received_at).total_seconds() / 3600
             if outcome in _DECIDED.values() and result.decided_at is not None else None)
    return _Request(result.priority, result.received_at, outcome, hours, extended=result.extended_from is not None)


def _is_appeal(record: RunRecord) -> bool:
    return getattr(record.input, "appeal", None) is not None


def _appeal(record: RunRecord) -> _Request:
    """A reconsideration, in the year and priority of the request appealed (its input's submission)."""
    submission = record.input.submission
    determination = record.result.determination if record.result is not None else None
    return _Request(submission.priority, submission.received_at,
                    _DECIDED.get(determination or "", "no_determination"), None)


def _percent(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 2) if whole else None


def _figures(priority: Priority, requests: list[_Request], appeals: list[_Request]) -> PriorityFigures:
    count = {o: sum(r.outcome == o for r in requests)
             for o in ("approved", "denied", "partially_approved", "pended", "no_determination")}
    hours = [r.hours for r in requests if r.hours is not None]
    whole = len(requests)
    overturned = sum(a.outcome == "approved" for a in appeals)
    extended = sum(r.extended and r.outcome == "approved" for r in requests)
    return PriorityFigures(
        priority=priority, requests=whole, **count, approved_after_appeal=overturned,
        extended_then_approved=extended, appeals=len(appeals),
        percent_approved=_percent(count["approved"], whole), percent_denied=_percent(count["denied"], whole),
        percent_partially_approved=_percent(count["partially_approved"], whole),
        percent_approved_after_appeal=_percent(overturned, whole),
        percent_extended_then_approved=_percent(extended, whole),
        decided=len(hours), average_hours=statistics.fmean(hours) if hours else None,
        median_hours=statistics.median(hours) if hours else None)


def _ledger_only(entries: Iterable[LedgerEntry], read: set[str], start: datetime, end: datetime) -> int:
    """Prior-authorization workflow ids whose first ledger entry falls in [start, end) and that were not read."""
    first: dict[str, datetime] = {}
    for entry in entries:
        if entry.workflow_id.startswith(PRIOR_AUTH.id_prefix) or entry.tool == "issue_determination":
            at = entry.at.astimezone(UTC)
            first[entry.workflow_id] = min(at, first.get(entry.workflow_id, at))
    return sum(start <= at < end and wid not in read for wid, at in first.items())


def um_metrics(records: Iterable[RunRecord], year: int, *, source: str,
               ledger: Iterable[LedgerEntry] | None = None) -> UmMetricsReport:
    """The year's report from decoded runs (any program's: the others are counted and skipped).

    ``ledger``: the decision ledger's entries, to count the year's requests it knows of whose runs were not read.
    """
    start, end = year_bounds(year)
    latest: dict[str, RunRecord] = {}
    other = duplicates = 0
    for record in records:
        if record.program.name != PRIOR_AUTH.name:
            other += 1
            continue
        kept = latest.get(record.workflow_id)
        if kept is not None:
            duplicates += 1
            if kept.started_at >= record.started_at:
                continue
        latest[record.workflow_id] = record
    requests = [_request(r) for r in latest.values() if not _is_appeal(r)]
    appeals = [_appeal(r) for r in latest.values() if _is_appeal(r)]
    in_year = [r for r in requests if start <= r.received_at.astimezone(UTC) < end]
    appeals_in_year = [a for a in appeals if start <= a.received_at.astimezone(UTC) < end]
    missing = _ledger_only(ledger, set(latest), start, end) if ledger is not None else 0
    notes = list(DEFINITIONS)
    if missing:
        notes.insert(0, f"INCOMPLETE: the decision ledger has {missing} prior-authorization request(s) of {year} "
                        "whose runs are not among those read, so the figures leave them out; export their "
                        "histories (`careloom history export`) and run the report on the folder.")
    return UmMetricsReport(
        year=year, period_start=start, period_end=end, source=source,
        standard=_figures("standard", [r for r in in_year if r.priority == "standard"],
                          [a for a in appeals_in_year if a.priority == "standard"]),
        expedited=_figures("expedited", [r for r in in_year if r.priority == "expedited"],
                           [a for a in appeals_in_year if a.priority == "expedited"]),
        runs_read=len(requests) + len(appeals),
        outside_year=len(requests) - len(in_year) + len(appeals) - len(appeals_in_year), other_programs=other,
        duplicate_runs=duplicates, ledger_checked=ledger is not None, ledger_only=missing, notes=notes)
