"""The ``ledger.append`` activity: every entry bound to the run that appends it, every decision entry verified
against the worker's own keys before it is appended (:mod:`store.ledger` keeps the chain).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from temporalio import activity

from guardrails.actions import action_digest
from guardrails.approvals import ApprovalDecision
from guardrails.policy import DecisionKey
from guardrails.signing import verify_signed
from runtime.errors import DecisionRefused
from runtime.metrics import QUALITY_SAMPLED
from store.approval_items import apply_change
from store.ledger import DecisionLedger
from store.ledger_entries import DECISION_EVENTS, LedgerEntry
from workflows.approval_projection import item_change
from workflows.approvals import LedgerAppend
from workflows.programs import PROGRAMS

__all__ = ["LedgerActivities", "count_quality_samples", "verified_entry"]


def _program_of(workflow_id: str) -> str:
    return next((p.name for p in PROGRAMS if workflow_id.startswith(p.id_prefix)), "other")


def count_quality_samples(entries: Iterable[LedgerEntry]) -> None:
    """Count the ``sampled`` entries just appended to the ledger."""
    for entry in entries:
        if entry.event == "sampled":
            QUALITY_SAMPLED.labels(_program_of(entry.workflow_id), entry.tool or "unknown").inc()


class LedgerActivities:
    """The ``ledger.append`` activity: verifies every decision entry on the worker before it appends."""

    def __init__(self, ledger: DecisionLedger, keys: tuple[DecisionKey, ...] = ()) -> None:
        self._ledger = ledger
        self._keys = keys

    def activities(self) -> list[object]:
        return [self.append]

    @activity.defn(name="ledger.append")
    def append(self, data: LedgerAppend) -> int:
        """Append the run's entries and, in the same transaction, its approval items' changes to the approvals
        projection, keyed by the workflow id and run the server names for this activity."""
        info = activity.info()
        workflow_id, run_id = info.workflow_id or "", info.workflow_run_id or ""
        entries = [verified_entry(e, data.proofs.get(e.event_id), workflow_id=workflow_id, run_id=run_id,
                                  keys=self._keys) for e in data.entries]
        change = item_change(data.items, workflow_id=workflow_id, run_id=run_id,
                             program=info.workflow_type or "") if data.items is not None else None
        now = datetime.now(UTC)
        added = self._ledger.append_new(
            entries, also=None if change is None else lambda db: apply_change(db, change, now))
        count_quality_samples(added)  # only entries added now: a retried append counts nothing twice
        return len(added)


_DECISION_OF = {"approved": {"approve"}, "edited": {"edit"}, "rejected": {"reject"}, "reassigned": {"reassign"},
                "signed_off": {"approve", "edit"}}
"""Which decision a decision entry records."""


def verified_entry(entry: LedgerEntry, proof: ApprovalDecision | None, *, workflow_id: str, run_id: str,
                   keys: tuple[DecisionKey, ...]) -> LedgerEntry:
    """The entry as the worker vouches for it.

    Every entry is bound to the run that appends it: its workflow id, run id and event-id prefix must be the
    activity's own (from the Temporal server), else it is kept marked ``verified: false`` with the reason (the
    ledger records what was claimed; `careloom ledger verify` reports it). A decision entry is ``verified: true``
    only when its signed decision checks out against the worker's keys, this workflow and run, and says what the
    entry says: the same item, approver, role, kind of decision and digest."""
    try:
        if (entry.workflow_id, entry.run_id) != (workflow_id, run_id) or not entry.event_id.startswith(
                f"{workflow_id}/{run_id}/"):
            raise DecisionRefused("forbidden", f"appended by another run ({workflow_id} run {run_id})")
        if entry.event not in DECISION_EVENTS:
            return entry
        if proof is None:
            raise DecisionRefused("forbidden", "no signed decision came with it")
        if (proof.approval_id, proof.approver, proof.role) != (entry.approval_id, entry.actor, entry.role):
            raise DecisionRefused("forbidden", "the signed decision names another item, approver or role")
        if proof.decision not in _DECISION_OF[entry.event]:
            raise DecisionRefused("forbidden", f"the signed decision is a {proof.decision}, not {entry.event}")
        decided = action_digest(proof.arguments) if proof.arguments is not None else proof.digest
        if entry.event != "reassigned" and decided != entry.digest:
            raise DecisionRefused("forbidden", "the signed decision is about another version of the action")
        verify_signed(proof, workflow_id=workflow_id, run_id=run_id, keys=keys)
    except DecisionRefused as refused:
        return entry.model_copy(update={"verified": False, "unverified_reason": str(refused)})
    return entry.model_copy(update={"verified": True})
