"""The approval book: the one place a run's human approvals live.

Pure and deterministic (no Temporal calls, time comes in as ``now``), so the
workflow only wires it to its ``decide`` update, validator, timer and ledger
activity, and the rules are unit-tested without a server.

    open(items, now)          an action now awaits a human (ledger: requested)
    validate(decision, ...)   refuse before anything reaches history
    apply(decision, now)      the decision's result (approve, edit, reject, reassign, first sign-off)
    tick(now)                 reminders, escalations along the queue chain, expiry at its end
    next_wake_up()            the earliest reminder or SLA deadline
    take_decided()            final outcomes for the agent's next step
    take_ledger()             ledger entries not yet written (and the signed decisions behind them)
    withdraw(actor, reason, now)  the run is withdrawn or cancelled: every pending item closes, nothing runs
    sample(workflow_id, action, now)  an action executed without a human, maybe picked for quality review

Nothing here ever approves: a deadline escalates an item, and the end of the
chain expires it (the action is never run).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from pydantic import BaseModel, Field

from guardrails.actions import ProposedAction, action_digest
from guardrails.approvals import (
    ApprovalDecision,
    DecisionResult,
    PendingApproval,
    ReceivedDecision,
    SignOff,
    decision_key,
)
from guardrails.policy import ROLE_RANK, ApprovalRouting
from guardrails.routing import clock_for
from guardrails.signing import verify_decision
from runtime.errors import DecisionRefused
from store.ledger_entries import LedgerEntry, LedgerEvent
from tools.registry import ToolSpec

__all__ = ["LEDGER_APPEND", "ApprovalBook", "EditCheck", "ItemChanges", "LedgerAppend", "RoutedPolicy", "quality_sample_fraction",
           "quality_sampled"]


class ItemChanges(BaseModel):
    """The approvals projection's part of a ledger append (:mod:`store.approval_items`): the items these entries
    opened or moved, as the run now holds them, and the ids of those they closed."""

    open: list[PendingApproval] = Field(default_factory=list)
    closed: list[str] = Field(default_factory=list)


class LedgerAppend(BaseModel):
    """What the book hands the ``ledger.append`` activity: its entries, the signed decision behind each
    decision entry (:mod:`workflows.ledger_activity` verifies them on the worker before it appends), and the
    approvals projection's changes, written in the same transaction."""

    entries: list[LedgerEntry]
    proofs: dict[str, ApprovalDecision] = Field(default_factory=dict, description=(
        "Event id -> the signed decision behind a decision entry, verified by the worker before it appends."))
    items: ItemChanges | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "The approvals projection's changes (None in histories written before the projection)."))


_ITEM_EVENTS = frozenset({"requested", "reminded", "escalated", "expired", "reassigned", "signed_off", "approved",
                          "rejected", "edited", "withdrawn"})
"""Ledger events about an approval item (``sampled``, ``quality_reviewed``, ``run_failed`` are not)."""

LEDGER_APPEND = ToolSpec("ledger.append", "ledger", LedgerAppend, int)
"""The ledger activity every program's runs call (hosted by :class:`workflows.ledger_activity.LedgerActivities`)."""


class RoutedPolicy(Protocol):
    """What the book needs of a program's policy: its routing and business calendar."""

    @property
    def approvals(self) -> ApprovalRouting: ...

    @property
    def business_day_end_hour(self) -> int: ...

    @property
    def holidays(self) -> object: ...

    @property
    def policy_id(self) -> str: ...


def quality_sample_fraction(workflow_id: str, action_id: str) -> float:
    """A stable number in [0, 1) for this action: the first 8 hex digits of sha256(workflow id/action id)."""
    digest = hashlib.sha256(f"{workflow_id}/{action_id}".encode()).hexdigest()
    return int(digest[:8], 16) / 16**8


def quality_sampled(workflow_id: str, action_id: str, rate: float) -> bool:
    """Whether an automatically executed action is picked for quality review at this rate.

    A hash, not a random draw: replay picks the same actions, and so does anyone recomputing it later."""
    return rate > 0 and quality_sample_fraction(workflow_id, action_id) < rate


EditCheck = Callable[[ApprovalDecision, PendingApproval], None]
"""A program's check of edited arguments (its guardrails); raises :class:`DecisionRefused`."""


class ApprovalBook:
    """Pending items, decisions, sign-offs, reminders, escalation and expiry of one run."""

    def __init__(self, policy: RoutedPolicy, *, initiated_by: str, run_id: str = "",
                 excluded: Sequence[str] = ()) -> None:
        self._policy = policy
        self._initiated_by = initiated_by
        self._excluded = frozenset(excluded)  # who may not decide here (e.g. the deciders of an appealed decision)
        self._run_id = run_id
        self._pending: dict[str, PendingApproval] = {}
        self._decided: dict[str, ApprovalDecision] = {}
        self._answered: dict[str, DecisionResult] = {}  # decision_key -> result, for identical repeats
        self._accepted = 0
        self._outcomes: list[ReceivedDecision] = []
        self._ledger: list[LedgerEntry] = []
        self._ledger_seq = 0
        self._proofs: dict[str, ApprovalDecision] = {}  # ledger event id -> the signed decision behind it
        self._roles: dict[str, str] = {}  # approval id -> the most senior role it ever needed

    # --- reading ------------------------------------------------------------
    @property
    def pending(self) -> list[PendingApproval]:
        """Items awaiting a human, in the order they were opened."""
        return list(self._pending.values())

    def _note_role(self, item: PendingApproval) -> None:
        known = self._roles.get(item.approval_id)
        if known is None or ROLE_RANK[item.required_role] > ROLE_RANK[known]:
            self._roles[item.approval_id] = item.required_role

    @property
    def decision_key_ids(self) -> list[str]:
        signatures = self._policy.approvals.decision_signatures
        return [k.key_id for k in signatures.keys] if signatures else []

    @property
    def answers(self) -> int:
        """How many decisions were applied (identical repeats count once)."""
        return self._accepted

    @property
    def has_outcomes(self) -> bool:
        """A final decision or an expiry is waiting for the agent."""
        return bool(self._outcomes)

    def next_wake_up(self) -> datetime | None:
        """The earliest SLA deadline or unsent reminder, or None with nothing pending."""
        clocks = [p.sla_deadline for p in self._pending.values()]
        clocks += [p.remind_at for p in self._pending.values() if not p.reminded]
        return min(clocks, default=None)

    # --- changing ------------------------------------------------------------
    def open(self, items: list[PendingApproval], now: datetime) -> None:
        """These actions now await a human."""
        for item in items:
            self._pending[item.approval_id] = item
            self._note_role(item)
            self._record(item, "requested", "system", now, reason="; ".join(item.reasons),
                         confidence=_raw_confidence(item),
                         risk_model=getattr(item.context, "risk_model_ref", None))

    def tick(self, now: datetime) -> list[LedgerEntry]:
        """Record reminders; escalate items past their deadline; expire them when the chain ends."""
        before = len(self._ledger)
        routing = self._policy.approvals
        for approval_id, item in list(self._pending.items()):
            if not item.reminded and now >= item.remind_at:
                item = item.model_copy(update={"reminded": True})
                self._pending[approval_id] = item
                self._record(item, "reminded", "system", now)
            if now < item.sla_deadline:
                continue
            next_queue = routing.queues[item.queue].escalate_to
            if next_queue is None:
                del self._pending[approval_id]
                self._outcomes.append(ReceivedDecision(kind="expired", approval=item))
                self._record(item, "expired", "system", now, reason="escalation chain exhausted; nothing was executed")
                continue
            clock = clock_for(next_queue, item.required_role, self._policy, now)
            item = item.entering(clock, escalation_level=item.escalation_level + 1)
            self._pending[approval_id] = item
            self._note_role(item)
            self._record(item, "escalated", "system", now, reason=f"SLA deadline passed; now in {clock.queue}")
        return self._ledger[before:]

    def validate(self, decision: ApprovalDecision, *, check_edit: EditCheck, workflow_id: str | None = None,
                 now: datetime | None = None) -> None:
        """Raise :class:`DecisionRefused` unless the decision may be applied (or is an identical repeat).

        The early refusal (the worker verifies again, with its own keys, before it writes anything): an
        unsigned decision is refused whatever the policy says; with decision keys in the policy the signature
        is checked against them, this workflow id and run, and ``now`` (the workflow's time) — a forged or
        replayed decision is refused even when it repeats one already applied.
        """
        if decision.signature is None:
            raise DecisionRefused("forbidden", "unsigned decision: careloom only accepts decisions signed by its "
                                               "API or CLI after they authenticate the approver")
        signatures = self._policy.approvals.decision_signatures
        if signatures is not None:
            if workflow_id is None or now is None:
                raise DecisionRefused("invalid", "signed decisions are checked against the run's id and time")
            verify_decision(decision, workflow_id, self._run_id, signatures.keys, now=now,
                            max_age=timedelta(seconds=signatures.max_age_seconds))
        if self._is_repeat(decision):
            return
        if decision.approval_id in self._decided:
            needed = self._roles.get(decision.approval_id)
            if needed is not None and ROLE_RANK[decision.role] < ROLE_RANK[needed]:
                # Not theirs to see: the same answer as an unknown item (its outcome and approver stay hidden).
                raise DecisionRefused("not_found", (
                    f"unknown approval {decision.approval_id!r}; list pending approvals with `careloom approvals list`"))
            first = self._decided[decision.approval_id]
            raise DecisionRefused("conflict", (
                f"approval {decision.approval_id} was already decided ({first.decision} by {first.approver}); "
                "a different decision is refused"))
        item = self._pending.get(decision.approval_id)
        if item is None:
            raise DecisionRefused("not_found", (
                f"unknown approval {decision.approval_id!r}; list pending approvals with `careloom approvals list`"))
        if decision.digest != item.digest:
            raise DecisionRefused("conflict", (
                f"stale digest for approval {decision.approval_id}: the action is now {item.digest[:12]}, "
                f"you saw {decision.digest[:12]}; reload it and decide again"))
        if decision.approver == "system":
            raise DecisionRefused("forbidden", "'system' is careloom itself: a decision needs a person's user id")
        if decision.approver == self._initiated_by:
            raise DecisionRefused("forbidden",
                                  f"{decision.approver} initiated this run and may not approve its actions")
        if decision.approver in self._excluded:
            raise DecisionRefused("forbidden", (
                f"{decision.approver} took part in the decision under appeal: a reconsideration is decided by a "
                "physician who did not; ask another reviewer"))
        if ROLE_RANK[decision.role] < ROLE_RANK[item.required_role]:
            raise DecisionRefused("forbidden", (
                f"approval {decision.approval_id} needs role {item.required_role}; "
                f"{decision.approver} has {decision.role}"))
        if any(s.approver == decision.approver for s in item.signoffs):
            raise DecisionRefused("forbidden", (
                f"{decision.approver} already signed off {decision.approval_id}; "
                "the second approver must be someone else"))
        if decision.bulk_tool is not None:
            if decision.bulk_tool != item.tool:
                raise DecisionRefused("invalid", (
                    f"bulk decisions must be homogeneous: {decision.approval_id} is {item.tool}, "
                    f"not {decision.bulk_tool}"))
            if item.dual_signoff or item.required_role == "md":
                raise DecisionRefused("forbidden", (
                    f"{decision.approval_id} needs an {item.required_role} decision on its own; "
                    "it cannot be bulk-decided"))
        if decision.decision == "reassign":
            queues = self._policy.approvals.queues
            if decision.queue not in queues:
                raise DecisionRefused("invalid", (
                    f"unknown queue {decision.queue!r}; known: {', '.join(sorted(queues))}"))
            if decision.queue == item.queue:
                raise DecisionRefused("invalid", f"{decision.approval_id} is already in queue {item.queue}")
            return
        if decision.decision != "edit":
            return
        if item.signoffs:
            # The first sign-off was for the action as it stands; an edit now would run an action only one
            # person approved.
            raise DecisionRefused("forbidden", (
                f"{decision.approval_id} already has a sign-off by {item.signoffs[0].approver} for this exact "
                "action; the second reviewer approves or rejects it (with the reason), never edits it"))
        if decision.arguments is None or decision.arguments.tool != item.tool:
            raise DecisionRefused("invalid", f"an edit must keep the tool {item.tool}")
        check_edit(decision, item)

    def apply(self, decision: ApprovalDecision, now: datetime) -> DecisionResult:
        """Apply a validated decision; an identical repeat returns the first result."""
        key = decision_key(decision)
        if self._is_repeat(decision):
            return self._answered[key]
        result = self._apply(decision, self._pending[decision.approval_id], now)
        self._answered[key] = result
        self._accepted += 1
        return result

    def _is_repeat(self, decision: ApprovalDecision) -> bool:
        """An identical decision already applied (a retry); a reassignment repeats only while it still holds."""
        if decision_key(decision) not in self._answered:
            return False
        item = self._pending.get(decision.approval_id)
        return not (decision.decision == "reassign" and item is not None and item.queue != decision.queue)

    def _apply(self, decision: ApprovalDecision, item: PendingApproval, now: datetime) -> DecisionResult:
        base = {"approval_id": item.approval_id, "action_id": item.action_id, "decision": decision.decision,
                "approver": decision.approver, "role": decision.role, "reason": decision.reason, "decided_at": now}
        if decision.decision == "reassign":
            clock = clock_for(decision.queue or item.queue, item.required_role, self._policy, now)
            moved = item.entering(clock)
            self._pending[item.approval_id] = moved
            self._record(moved, "reassigned", decision.approver, now, role=decision.role, reason=decision.reason,
                         key_id=_key_id(decision), proof=decision)
            return DecisionResult(**base, outcome="reassigned", approved_digest=None, queue=clock.queue)
        if decision.decision == "reject":
            del self._pending[item.approval_id]
            result = DecisionResult(**base, outcome="rejected", approved_digest=None, queue=item.queue)
            self._finish(decision, item)
            self._record(item, "rejected", decision.approver, now, role=decision.role, reason=decision.reason,
                         key_id=_key_id(decision), proof=decision)
            return result
        if decision.decision == "edit" and decision.arguments is not None:
            arguments, digest = decision.arguments, action_digest(decision.arguments)
        else:
            arguments, digest = item.arguments, item.digest
        final = item.model_copy(update={"arguments": arguments, "digest": digest})
        if item.dual_signoff and not item.signoffs:
            # First of two sign-offs: the item stays pending for a second, distinct reviewer.
            waiting = final.model_copy(update={
                "required_role": self._policy.approvals.second_signoff_role,
                "signoffs": [SignOff(approver=decision.approver, role=decision.role, at=now, digest=digest,
                                     decision=decision)]})
            self._pending[item.approval_id] = waiting
            self._record(waiting, "signed_off", decision.approver, now, role=decision.role, reason=decision.reason,
                         key_id=_key_id(decision), proof=decision)
            return DecisionResult(**base, outcome="awaiting_second_signoff", approved_digest=digest,
                                  queue=item.queue)
        del self._pending[item.approval_id]
        outcome = "edited" if decision.decision == "edit" else "approved"
        result = DecisionResult(**base, outcome=outcome, approved_digest=digest, queue=item.queue)
        self._finish(decision, final)  # signoffs before this one, for the record
        self._record(final, outcome, decision.approver, now, role=decision.role, reason=decision.reason,
                     key_id=_key_id(decision), digest=digest, proof=decision)
        return result

    def _finish(self, decision: ApprovalDecision, item: PendingApproval) -> None:
        self._decided[item.approval_id] = decision
        self._outcomes.append(ReceivedDecision(decision=decision, approval=item))

    # --- handing over ---------------------------------------------------------
    def take_decided(self) -> list[ReceivedDecision]:
        """Final decisions and expiries since the last call, for the agent's next step."""
        outcomes, self._outcomes = self._outcomes, []
        return outcomes

    def sample(self, workflow_id: str, action: ProposedAction, now: datetime) -> bool:
        """An action ran without any human approval: maybe record it for retrospective quality review.

        Never blocks or changes the action; the ledger's ``sampled`` entry is the review queue's item."""
        routing = self._policy.approvals
        if not quality_sampled(workflow_id, action.action_id, routing.quality_sample_rate):
            return False
        self._append(LedgerEntry(
            event_id="", workflow_id=workflow_id, approval_id=action.action_id, event="sampled", actor="system",
            at=now, digest=action.digest, queue=routing.quality_review_queue, tool=action.tool,
            reason=f"quality sample: {routing.quality_sample_rate:.0%} of automatic executions",
            policy_id=self._policy.policy_id))
        return True

    def take_ledger(self) -> LedgerAppend:
        """Ledger entries not yet handed to the ledger activity, with the signed decisions behind them and the
        approvals projection's changes: each item an entry touched, as it is now if still pending, else closed."""
        entries, self._ledger = self._ledger, []
        proofs, self._proofs = self._proofs, {}
        touched = list(dict.fromkeys(e.approval_id for e in entries if e.event in _ITEM_EVENTS))
        items = ItemChanges(open=[self._pending[a] for a in touched if a in self._pending],
                            closed=[a for a in touched if a not in self._pending]) if touched else None
        return LedgerAppend(entries=entries, proofs=proofs, items=items)

    def withdraw(self, actor: str, reason: str, now: datetime, *, workflow_id: str) -> list[str]:
        """The run is withdrawn (or cancelled): every pending item closes unexecuted, one ledger entry each, and
        one for the run. Returns the approval ids closed."""
        closed = []
        for approval_id, item in list(self._pending.items()):
            del self._pending[approval_id]
            closed.append(approval_id)
            self._record(item, "withdrawn", actor, now, reason=f"{reason}; not executed")
        self._append(LedgerEntry(
            event_id="", workflow_id=workflow_id, approval_id="run", event="withdrawn", actor=actor, at=now,
            digest="", reason=reason + (f"; closed {', '.join(closed)}" if closed else ""),
            policy_id=self._policy.policy_id))
        return closed

    def record_failure(self, reason: str, now: datetime, *, workflow_id: str, follow_up: str | None) -> None:
        """The run could not go on (a tool failed for good, data it cannot use): the ledger says so, and which
        human follow-up Task was made."""
        self._append(LedgerEntry(
            event_id="", workflow_id=workflow_id, approval_id="run", event="run_failed", actor="system", at=now,
            digest="", reason=reason + (f"; follow-up {follow_up}" if follow_up else "; no follow-up Task"),
            policy_id=self._policy.policy_id))

    def _record(self, item: PendingApproval, event: LedgerEvent, actor: str, now: datetime, *,
                role: str | None = None, reason: str | None = None, digest: str | None = None,
                key_id: str | None = None, proof: ApprovalDecision | None = None,
                confidence: float | None = None, risk_model: str | None = None) -> None:
        entry = self._append(LedgerEntry(
            event_id="", workflow_id=item.workflow_id, approval_id=item.approval_id, event=event, actor=actor,
            role=role, at=now, digest=digest or item.digest, queue=item.queue, tool=item.tool, reason=reason,
            policy_id=item.policy_id, key_id=key_id, confidence=confidence, risk_model=risk_model))
        if proof is not None:
            self._proofs[entry.event_id] = proof

    def _append(self, entry: LedgerEntry) -> LedgerEntry:
        """Number the entry in the run's one ledger sequence and keep it for the next flush.

        The event id names the run (``workflow id/run id/seq``): a run restarted under the same workflow id
        appends its own entries instead of colliding with the first run's."""
        self._ledger_seq += 1
        run = f"{self._run_id}/" if self._run_id else ""
        numbered = entry.model_copy(update={"event_id": f"{entry.workflow_id}/{run}{self._ledger_seq}",
                                            "run_id": self._run_id or None})
        self._ledger.append(numbered)
        return numbered


def _raw_confidence(item: PendingApproval) -> float:
    """The planner's own confidence: the ``raw_confidence`` signal when a calibrator changed it, else the item's."""
    raw = next((s.value for s in item.signals if s.name == "raw_confidence"), None)
    return round(float(raw if raw is not None else item.confidence), 4)


def _key_id(decision: ApprovalDecision) -> str | None:
    return decision.signature.key_id if decision.signature else None
