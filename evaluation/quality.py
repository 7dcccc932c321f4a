"""The retrospective quality-review queue: automatic executions sampled into the ledger, and their findings.

A run appends a ``sampled`` entry when an action it executed with no human
approval falls in the policy's sample (``ApprovalRouting.quality_sample_rate``,
a deterministic hash of workflow id and action id). The queue is the
``sampled`` entries without a ``quality_reviewed`` entry for the same action;
a review appends that entry (the reviewer, their role, the finding and an
optional note). Nothing here changes or blocks the action: it ran already.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel

from runtime.errors import CareloomError
from store.ledger_entries import LedgerEntry

__all__ = ["FINDINGS", "Finding", "QualityReviewError", "QualitySample", "finding_of", "pending_samples",
           "review_entry"]

Finding = Literal["appropriate", "inappropriate"]
FINDINGS: tuple[str, ...] = get_args(Finding)


class QualityReviewError(CareloomError):
    """A quality review was refused; the message names the problem and the fix."""


class QualitySample(BaseModel):
    """One sampled automatic execution awaiting review."""

    workflow_id: str
    action_id: str
    tool: str | None
    digest: str
    queue: str | None
    sampled_at: datetime


def finding_of(entry: LedgerEntry) -> str:
    """The finding a ``quality_reviewed`` entry records (its reason is ``finding`` or ``finding: note``)."""
    return (entry.reason or "").split(":", 1)[0].strip()


def _reviews(entries: list[LedgerEntry]) -> dict[tuple[str, str], LedgerEntry]:
    return {(e.workflow_id, e.approval_id): e for e in entries if e.event == "quality_reviewed"}


def pending_samples(entries: list[LedgerEntry]) -> list[QualitySample]:
    """Sampled actions with no review yet, oldest first."""
    reviewed = _reviews(entries)
    return [QualitySample(workflow_id=e.workflow_id, action_id=e.approval_id, tool=e.tool, digest=e.digest,
                          queue=e.queue, sampled_at=e.at)
            for e in entries if e.event == "sampled" and (e.workflow_id, e.approval_id) not in reviewed]


def review_entry(entries: list[LedgerEntry], *, workflow_id: str, action_id: str, finding: str,
                 note: str | None, reviewer: str, role: str, now: datetime) -> LedgerEntry:
    """The ``quality_reviewed`` entry for this review; :class:`QualityReviewError` if it may not be recorded."""
    if finding not in FINDINGS:
        raise QualityReviewError(f"unknown finding {finding!r}; use --finding appropriate or --finding "
                                 "inappropriate")
    if reviewer == "system":
        raise QualityReviewError("'system' is careloom itself: a quality review needs a person's user id")
    sample = next((e for e in entries if e.event == "sampled" and e.workflow_id == workflow_id
                   and e.approval_id == action_id), None)
    if sample is None:
        raise QualityReviewError(f"action {action_id} of {workflow_id} was never sampled for quality review; "
                                 "`careloom quality list` shows the sampled actions awaiting review")
    done = _reviews(entries).get((workflow_id, action_id))
    if done is not None:
        raise QualityReviewError(f"action {action_id} of {workflow_id} was already reviewed by {done.actor} at "
                                 f"{done.at:%Y-%m-%d %H:%M}Z ({finding_of(done)}); a review is recorded once, the "
                                 "ledger is append-only")
    note = (note or "").strip()
    return LedgerEntry(
        # One review per action, enforced by the ledger's unique event id even between two processes.
        event_id=f"{workflow_id}/quality-review/{action_id}", workflow_id=workflow_id, approval_id=action_id,
        event="quality_reviewed", tool=sample.tool, actor=reviewer, role=role, at=now, digest=sample.digest,
        queue=sample.queue, reason=f"{finding}: {note}" if note else finding, policy_id=sample.policy_id)
