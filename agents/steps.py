"""Node logic every program's agent graph shares: judge, open approvals, execute, apply decisions.

A program's graph supplies what differs (how an action is judged, how a
pending item is described, which write tool input an action becomes); the
life of an action is the same everywhere:

    proposed → (ready | blocked | deferred | awaiting_approval) → approved → ready → executed | folded
                                         ↘ rejected · expired (never executed) · failed

``folded``: the write tool wrote nothing because another run had already done it (one contact a day: the
member was contacted today); the run must not report the action as sent, nor sample it as an automatic
execution (it was not one).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, timedelta

from typing import Any

from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel

from agents.runtime import AgentRuntime, ToolFailure, runtime_of
from guardrails.actions import ProposedAction
from guardrails.actions import ActionRecord
from guardrails.approvals import PendingApproval, ReceivedDecision
from guardrails.policy import Role, max_role
from guardrails.verdicts import GuardrailVerdict
from tools.deadlines import next_contact_time
from tools.errors import CONTACT_BUDGET_SPENT, CONTACT_NOT_ALLOWED, OUTSIDE_CONTACT_HOURS
from tools.registry import ToolSpec
from tools.tasks import CreateTaskArgs
from tools.writes import SignedApproval

__all__ = ["apply_decisions", "apply_received", "contact_refusals", "execute_ready", "expired_follow_up", "folded_reason",
           "guard_actions"]

Judge = Callable[[ActionRecord], GuardrailVerdict]
Describe = Callable[[ActionRecord, list[str], Role], PendingApproval]
WriteCall = Callable[[ActionRecord], tuple[ToolSpec, BaseModel]]
OnFailure = Callable[[ActionRecord, ToolFailure], None]


def guard_actions(rt: AgentRuntime, records: list[ActionRecord], verdicts: list[GuardrailVerdict], *,
                  judge: Judge, describe: Describe) -> tuple[list[ActionRecord], list[GuardrailVerdict]]:
    """Judge every open action (new, approved, or deferred and now due); open approvals where asked."""
    now = rt.now()
    actions = [r.model_copy() for r in records]  # nodes only reassign top-level fields
    verdicts = list(verdicts)
    requests: list[PendingApproval] = []
    for record in actions:
        due = record.status == "deferred" and record.not_before is not None and record.not_before <= now
        if record.status not in ("proposed", "approved") and not due:
            continue
        verdict = judge(record)
        verdicts.append(verdict)
        record.not_before = None
        if verdict.decision == "allow":
            record.status = "ready"
        elif verdict.decision == "block":
            record.status, record.reason = "blocked", "; ".join(verdict.reasons)
        elif verdict.decision == "defer":
            record.status, record.not_before = "deferred", verdict.defer_until
        else:
            record.status = "awaiting_approval"
            record.approval_requests += 1
            requests.append(describe(record, verdict.reasons, verdict.required_role or "md"))
    if requests:
        rt.request_approvals(requests)
    return actions, verdicts


async def execute_ready(rt: AgentRuntime, records: list[ActionRecord], *, write_call: WriteCall,
                        on_failure: OnFailure | None = None) -> list[ActionRecord]:
    """Run every ready action through its write tool; a failure for good is the action's, not the run's."""
    actions = [r.model_copy() for r in records]  # nodes only reassign top-level fields
    for record in actions:
        if record.status != "ready":
            continue
        try:
            record.result = await rt.call_tool(*write_call(record))
            if record.result.folded_into is not None:
                record.status, record.reason = "folded", folded_reason(record.result.folded_into)
                continue
            record.status = "executed"
            if record.approved_by is None:  # allowed by the guardrails and run with no human: auditable
                rt.executed_automatically(record.action)
        except ToolFailure as failure:
            if on_failure is not None:
                on_failure(record, failure)
            if record.status == "ready":
                record.status, record.reason = "failed", f"{failure.error_type}: {failure}"
    return actions


def folded_reason(folded_into: str) -> str:
    """Why a folded action ended without writing: what it folded into."""
    return (f"one contact a day: the member was contacted today by {folded_into}; nothing was sent for this "
            "action")


def apply_received(records: list[ActionRecord], inbox: list[ReceivedDecision], *,
                   follow_up: Callable[[PendingApproval], ActionRecord]) -> list[ActionRecord]:
    """Apply final decisions and expiries; an expired item is never run and gets a human follow-up."""
    actions = [r.model_copy() for r in records]  # nodes only reassign top-level fields
    by_id = {r.action.action_id: r for r in actions}
    for received in inbox:
        item = received.approval
        record = by_id[item.action_id]
        if received.kind == "expired":
            record.status = "expired"
            record.reason = (f"no decision before the SLA deadline in queue {item.queue} after "
                             f"{item.escalation_level} escalation(s); not executed")
            actions.append(follow_up(item))
            continue
        decision = received.decision
        if decision is None:
            continue
        approvers = [s.approver for s in item.signoffs] + [decision.approver]
        # With two sign-offs the action carries the authority of the more senior one (e.g. the MD).
        senior = max_role([decision.role, *(s.role for s in item.signoffs)])
        record.approved_by, record.approver_role = ", ".join(approvers), senior
        if decision.decision == "reject":
            record.status, record.reason = "rejected", f"rejected by {decision.approver}: {decision.reason}"
            continue
        if item.arguments != record.action.arguments:
            record.action = record.action.model_copy(update={"arguments": item.arguments})
            record.edited = True
        signed = [s.decision for s in item.signoffs if s.decision is not None] + [decision]
        record.approval = SignedApproval(approval_id=item.approval_id,
                                         decisions=[d.model_dump(mode="json") for d in signed])
        record.status = "approved"
    return actions


def expired_follow_up(item: PendingApproval, now: datetime) -> ActionRecord:
    """A human Task for an approval nobody decided in time: the action itself is never run."""
    action = ProposedAction(
        action_id=f"{item.action_id}-follow-up"[:40],
        arguments=CreateTaskArgs(
            kind="expired-approval-review", queue=item.queue, priority="urgent",
            description=f"Approval {item.approval_id} ({item.tool}) expired unanswered; review the run and decide "
                        "by hand",
            reason=f"SLA chain exhausted at queue {item.queue}", due=now + timedelta(days=1),
        ),
        rationale="An approval expired after its escalation chain; a person must follow up.",
        evidence=[f"approval={item.approval_id}", f"queue={item.queue}", f"escalations={item.escalation_level}"],
        confidence=1.0,
    )
    return ActionRecord(action=action, proposed_digest=action.digest)




def contact_refusals(now: Callable[[], datetime], time_zone: str, *, start: time, end: time) -> OnFailure:
    """What a member-contact tool's refusal does to its action: outside contact hours (the tool saw a closed
    window the guardrail had not) defers it to the next opening (a minute on if none is known); a contact no longer
    allowed (opt-out, deceased) blocks it; a lower-priority message over the member's contact budget waits a day
    (then it is judged and checked again). Any other failure stays the action's failure."""
    def on_failure(record: ActionRecord, failure: ToolFailure) -> None:
        if failure.error_type == OUTSIDE_CONTACT_HOURS:
            at = now()
            record.status = "deferred"
            record.not_before = next_contact_time(at, time_zone, start=start, end=end) or at + timedelta(minutes=1)
        elif failure.error_type == CONTACT_BUDGET_SPENT:
            record.status, record.reason, record.not_before = "deferred", str(failure), now() + timedelta(days=1)
        elif failure.error_type == CONTACT_NOT_ALLOWED:
            record.status, record.reason = "blocked", str(failure)

    return on_failure


async def apply_decisions(state: Any, config: RunnableConfig) -> dict[str, Any]:  # noqa: ANN401 - any program's state
    """The graph node every program resumes with: the decisions and expiries received while parked applied to the
    state's actions (an expired item gets a human follow-up), the inbox emptied."""
    rt = runtime_of(config)
    actions = apply_received(state.actions, state.inbox, follow_up=lambda item: expired_follow_up(item, rt.now()))
    return {"actions": actions, "inbox": []}
