"""The decision ledger cross-checked against the runs' histories, and the entries a closed-from-outside run owes.

The chain check (:meth:`store.ledger.DecisionLedger.verify`) proves nobody altered what was written; it cannot
see what was never written. This module reads each run's history and asks the ledger for:

* every entry the run handed to ``ledger.append`` (by event id, same content);
* a decision entry for every decision the run accepted (its ``decide`` update completed);
* a ``withdrawn`` entry for a run terminated or cancelled while approvals were open (a terminate runs no
  workflow code, so :func:`withdrawn_entries_owed` makes them from the history: who terminated it and why,
  and ``careloom ledger reconcile`` appends them).
"""

from __future__ import annotations

from dataclasses import dataclass

from history.audit import ledger_mismatches
from history.events import RunRecord
from store.ledger_entries import DECISION_EVENTS, LedgerEntry

__all__ = ["RunCheck", "check_run", "open_approvals", "withdrawn_entries_owed"]

_CLOSING = DECISION_EVENTS - {"reassigned", "signed_off"} | {"expired", "withdrawn"}
"""Events after which an approval item is no longer open."""


@dataclass(frozen=True)
class RunCheck:
    workflow_id: str
    run_id: str | None
    problems: list[str]


def _of_run(record: RunRecord, ledger: list[LedgerEntry]) -> list[LedgerEntry]:
    """The run's own entries: keyed with its run id, or written before entries named runs (``wf/seq``); never
    one the appending worker marked as another run's."""
    def legacy(e: LedgerEntry) -> bool:
        return e.run_id is None and e.event_id.removeprefix(f"{record.workflow_id}/").isdigit()

    return [e for e in ledger if e.workflow_id == record.workflow_id and e.verified is not False
            and (e.run_id == record.run_id or legacy(e))]


def open_approvals(entries: list[LedgerEntry]) -> dict[str, LedgerEntry]:
    """Approval id -> its last entry, for items requested and never closed (decided, expired or withdrawn)."""
    last: dict[str, LedgerEntry] = {}
    closed: set[str] = set()
    for entry in entries:
        if entry.approval_id == "run" or entry.event in ("sampled", "quality_reviewed"):
            continue
        last[entry.approval_id] = entry
        if entry.event in _CLOSING:
            closed.add(entry.approval_id)
        elif entry.event == "requested":
            closed.discard(entry.approval_id)
    return {a: e for a, e in last.items() if a not in closed}


def check_run(record: RunRecord, ledger: list[LedgerEntry]) -> RunCheck:
    """What the ledger lacks (or holds differently) for one run's history."""
    mine = _of_run(record, ledger)
    problems = [p for p in ledger_mismatches(record.ledger_entries, mine) if "in the history but" in p
                or "differs" in p]
    for event in record.decisions:
        result = event.result
        if result is None or result.outcome not in {"approved", "rejected", "edited", "reassigned",
                                                    "awaiting_second_signoff"}:
            continue
        if not any(e.approval_id == result.approval_id and e.actor == result.approver and e.event in DECISION_EVENTS
                   for e in mine):
            problems.append(f"{result.approver}'s decision on {result.approval_id} ({result.outcome}) is in the "
                            "history but not in the ledger")
    if record.closed_requested and not any(e.event == "withdrawn" and e.approval_id == "run" for e in mine):
        still_open = sorted(open_approvals(mine))
        problems.append(f"the run was {record.closed_as}" + (f" with approval(s) {', '.join(still_open)} open"
                                                               if still_open else "")
                        + " and the ledger has no withdrawn entry: run `careloom ledger reconcile`")
    return RunCheck(record.workflow_id, record.run_id, problems)


def withdrawn_entries_owed(record: RunRecord, ledger: list[LedgerEntry]) -> list[LedgerEntry]:
    """The ``withdrawn`` entries a run closed from outside owes (none if it has them or closed itself)."""
    mine = _of_run(record, ledger)
    if not record.closed_requested or any(e.event == "withdrawn" and e.approval_id == "run" for e in mine):
        return []
    actor = f"temporal:{record.closed_by}" if record.closed_by else "temporal"
    reason = f"{record.closed_as} through Temporal" + (f": {record.failure}" if record.failure else "")
    at = record.closed_at or record.started_at
    run = record.run_id or "unknown-run"
    owed = [item.model_copy(update={
        "event_id": f"{record.workflow_id}/{run}/reconciled/{item.approval_id}", "event": "withdrawn",
        "actor": actor, "role": None, "at": at, "reason": f"{reason}; not executed", "key_id": None,
        "verified": None, "unverified_reason": None, "run_id": record.run_id})
        for item in open_approvals(mine).values()]
    policy_id = mine[-1].policy_id if mine else getattr(getattr(record.input, "policy", None), "policy_id", "")
    owed.append(LedgerEntry(
        event_id=f"{record.workflow_id}/{run}/reconciled/run", workflow_id=record.workflow_id, approval_id="run",
        event="withdrawn", actor=actor, at=at, digest="", policy_id=policy_id, run_id=record.run_id,
        reason=reason + (f"; closed {', '.join(sorted(open_approvals(mine)))}" if open_approvals(mine) else "")))
    return owed
