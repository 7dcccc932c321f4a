"""The node logic every program's graph shares (agents/steps.py), driven by a fake runtime: no Temporal.

The fake is the whole :class:`AgentRuntime` protocol in plain Python: a fixed clock, scripted write results
(or :class:`ToolFailure`) by action id, and lists of what the nodes asked of it. The guardrails are the real
outreach rules on typed facts (``tests/guardrails/run_facts.py``); the approval items are routed as the
outreach graph routes them (``tests/workflows/approval_items.py``) and the decisions are signed by the test key.
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from agents.outreach_state import ActionRecord
from agents.runtime import AgentRuntime, ToolFailure
from agents.steps import apply_received, execute_ready, expired_follow_up, folded_reason, guard_actions
from guardrails.actions import ProposedAction
from guardrails.approvals import PendingApproval, ReceivedDecision, SignOff
from guardrails.outreach_rules import evaluate_action
from guardrails.policy import GuardrailPolicy, Role
from guardrails.verdicts import GuardrailVerdict
from tests.guardrails.run_facts import DISCHARGED, make_facts, outreach, task
from tests.workflows.approval_items import WORKFLOW_ID, decide, pending_item
from tools.outreach import SendOutreachInput
from tools.registry import CREATE_TASK, SEND_OUTREACH, ToolSpec, write_tool_for
from tools.tasks import CreateTaskArgs, CreateTaskInput
from tools.writes import SignedApproval, WriteResult

POLICY = GuardrailPolicy()
FACTS = make_facts()
NOON_NY = datetime(2024, 6, 11, 16, 0, tzinfo=UTC)         # Tue 12:00 EDT: inside contact hours
NIGHT_NY = datetime(2024, 6, 12, 1, 30, tzinfo=UTC)        # Tue 21:30 EDT: outside
NEXT_MORNING_NY = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)  # Wed 08:00 EDT: the window opens


class FakeRuntime:
    """An :class:`AgentRuntime` in plain Python: what a node asks is recorded, what a tool returns is scripted."""

    def __init__(self, now: datetime = NOON_NY, *, outcomes: dict[str, WriteResult | ToolFailure] | None = None
                 ) -> None:
        self.clock = now
        self.outcomes = outcomes or {}
        self.calls: list[tuple[ToolSpec, BaseModel]] = []
        self.requested: list[PendingApproval] = []
        self.automatic: list[str] = []
        self.published: list[str] = []

    def now(self) -> datetime:
        return self.clock

    async def call_tool(self, tool: ToolSpec, data: BaseModel) -> Any:
        self.calls.append((tool, data))
        action_id = data.idempotency_key.rsplit("/", 1)[-1]
        outcome = self.outcomes.get(action_id, WriteResult(reference=f"Task/{action_id}", created=True))
        if isinstance(outcome, ToolFailure):
            raise outcome
        return outcome

    def request_approvals(self, items: list[PendingApproval]) -> None:
        self.requested.extend(items)

    def executed_automatically(self, action: ProposedAction) -> None:
        self.automatic.append(action.action_id)

    def publish(self, state: Any, status: str) -> None:
        self.published.append(status)

    def idempotency_key(self, action_id: str) -> str:
        return f"{WORKFLOW_ID}/{action_id}"


def _record(action: ProposedAction, **fields: Any) -> ActionRecord:
    return ActionRecord(action=action, proposed_digest=action.digest, **fields)


def _judge(rt: FakeRuntime):
    return lambda r: evaluate_action(r.action, FACTS, POLICY, now=rt.now(), approved_role=r.approver_role)


def _describe(rt: FakeRuntime):
    return lambda r, reasons, role: pending_item(r.action, role=role, policy=POLICY, now=rt.now(),
                                                 reasons=tuple(reasons))


def _write_call(rt: FakeRuntime):
    """The write tool and input of an outreach action, as the outreach graph builds them (identifiers, key)."""
    def call(record: ActionRecord) -> tuple[ToolSpec, BaseModel]:
        tool = write_tool_for(record.action.arguments)
        common = {"member_id": "pt-guard-1", "encounter_id": "enc-guard-1",
                  "idempotency_key": rt.idempotency_key(record.action.action_id),
                  "approved_by": record.approved_by, "approval": record.approval,
                  "arguments": record.action.arguments}
        if tool is SEND_OUTREACH:
            return tool, SendOutreachInput(**common)
        return tool, CreateTaskInput(**common, authored_at=DISCHARGED)
    return call


def _guard(rt: FakeRuntime, records: list[ActionRecord]) -> tuple[list[ActionRecord], list[GuardrailVerdict]]:
    return guard_actions(rt, records, [], judge=_judge(rt), describe=_describe(rt))


async def _execute(rt: FakeRuntime, records: list[ActionRecord], **kwargs: Any) -> list[ActionRecord]:
    return await execute_ready(rt, records, write_call=_write_call(rt), **kwargs)


def _awaiting(rt: FakeRuntime, action: ProposedAction) -> tuple[ActionRecord, PendingApproval]:
    """The action judged, awaiting approval, and the item the guard opened for it."""
    [record], _ = _guard(rt, [_record(action)])
    assert "awaiting_approval" == record.status
    return record, rt.requested[-1]


def _follow_up(item: PendingApproval) -> ActionRecord:
    return expired_follow_up(item, NOON_NY)


# --- the fake ------------------------------------------------------------------

def test_the_fake_runtime_implements_every_member_of_the_protocol() -> None:
    """FakeRuntime has every method of AgentRuntime, with the same parameters (a drifting protocol fails here)."""
    members = {n for n, v in vars(AgentRuntime).items() if inspect.isfunction(v) and not n.startswith("_")}
    assert {"now", "call_tool", "request_approvals", "executed_automatically", "publish",
            "idempotency_key"} <= members
    for name in members:
        expected = list(inspect.signature(getattr(AgentRuntime, name)).parameters)
        assert expected == list(inspect.signature(getattr(FakeRuntime, name)).parameters), name
    assert inspect.iscoroutinefunction(FakeRuntime.call_tool) == inspect.iscoroutinefunction(AgentRuntime.call_tool)


# --- allowed: judged ready, executed with its result -----------------------------

async def test_an_allowed_action_executes_and_keeps_its_result() -> None:
    """A confident, non-adverse task is allowed, written once with the run's key, and keeps the tool's result."""
    rt = FakeRuntime(outcomes={"a2-task": WriteResult(reference="Task/t-1", created=True)})
    guarded, verdicts = _guard(rt, [_record(task(confidence=0.95))])

    assert (["ready"], ["allow"], []) == ([r.status for r in guarded], [v.decision for v in verdicts], rt.requested)
    [done] = await _execute(rt, guarded)

    assert ("executed", WriteResult(reference="Task/t-1", created=True)) == (done.status, done.result)
    [(tool, data)] = rt.calls
    assert (CREATE_TASK, f"{WORKFLOW_ID}/a2-task", None, None) == (
        tool, data.idempotency_key, data.approved_by, data.approval)
    assert ["a2-task"] == rt.automatic  # no human: the runtime may sample it for quality review


async def test_nodes_leave_their_input_records_unchanged() -> None:
    """guard and execute return new records: the state they were given still says proposed, then ready."""
    rt = FakeRuntime()
    given = [_record(task())]
    guarded, _ = _guard(rt, given)
    await _execute(rt, guarded)

    assert (["proposed"], ["ready"]) == ([r.status for r in given], [r.status for r in guarded])


async def test_only_ready_actions_are_executed() -> None:
    """execute writes the ready action only: awaiting, deferred, rejected and executed ones make no call."""
    rt = FakeRuntime()
    ready = _record(task(), status="ready")
    others = [_record(task(confidence=0.5).model_copy(update={"action_id": f"x{i}"}), status=s)
              for i, s in enumerate(["awaiting_approval", "deferred", "rejected", "executed", "proposed"])]
    out = await _execute(rt, [ready, *others])

    assert [ready.action.action_id] == [d.idempotency_key.rsplit("/", 1)[-1] for _, d in rt.calls]
    assert ["executed", "awaiting_approval", "deferred", "rejected", "executed", "proposed"] == [
        r.status for r in out]


# --- needs approval: an item opens, nothing is written ---------------------------------

async def test_an_action_needing_approval_opens_an_item_and_does_not_execute() -> None:
    """A low-confidence task awaits a care coordinator: one PendingApproval for its exact arguments, no write."""
    rt = FakeRuntime()
    action = task(confidence=0.5)
    [record], [verdict] = _guard(rt, [_record(action)])

    assert ("awaiting_approval", 1, "require_approval", "care_coordinator") == (
        record.status, record.approval_requests, verdict.decision, verdict.required_role)
    [item] = rt.requested
    assert (action.action_id, action.digest, "care_coordinator", ["confidence 0.50 below 0.75"]) == (
        item.action_id, item.digest, item.required_role, item.reasons)
    assert [] == [r.status for r in await _execute(rt, [record]) if r.status != "awaiting_approval"]
    assert ([], []) == (rt.calls, rt.automatic)


def test_an_adverse_action_asks_for_an_md() -> None:
    """An action that reduces a service is routed to an MD at full confidence (the judge's role is passed on)."""
    rt = FakeRuntime()
    _awaiting(rt, task("reduce-service", confidence=1.0))

    assert ["md"] == [i.required_role for i in rt.requested]


def test_awaiting_actions_are_not_judged_again() -> None:
    """A second guard pass over an action already awaiting approval opens no second item."""
    rt = FakeRuntime()
    record, _ = _awaiting(rt, task(confidence=0.5))
    again, verdicts = _guard(rt, [record])

    assert (1, 1, [], "awaiting_approval") == (len(rt.requested), again[0].approval_requests, verdicts,
                                               again[0].status)


def test_the_guard_requests_all_new_approvals_at_once() -> None:
    """Two actions needing approval in one pass: one request_approvals call carrying both items."""
    calls: list[int] = []
    rt = FakeRuntime()
    rt.request_approvals = lambda items: calls.append(len(items))  # type: ignore[method-assign]
    adverse = task("reduce-service").model_copy(update={"action_id": "a9-reduce"})
    _guard(rt, [_record(task(confidence=0.5)), _record(adverse)])

    assert [2] == calls


# --- approved: applied, judged again with the approver's role, executed with the signed approval --------

async def test_an_approved_decision_makes_the_action_ready_and_it_executes_with_the_signed_approval() -> None:
    """approve → approved (signed decisions attached) → guard allows it for the approver's role → executed."""
    rt = FakeRuntime()
    record, item = _awaiting(rt, task(confidence=0.5))
    approval = decide(item, approver="cc.lee", role="care_coordinator")
    [approved] = apply_received([record], [ReceivedDecision(decision=approval, approval=item)],
                                follow_up=_follow_up)

    signed = SignedApproval(approval_id=item.approval_id, decisions=[approval.model_dump(mode="json")])
    assert ("approved", "cc.lee", "care_coordinator", signed, False) == (
        approved.status, approved.approved_by, approved.approver_role, approved.approval, approved.edited)
    assert approval.signature is not None and "signature" in approved.approval.decisions[0]

    [ready], [verdict] = _guard(rt, [approved])
    assert ("ready", "allow", ["approved by care_coordinator: confidence 0.50 below 0.75"]) == (
        ready.status, verdict.decision, verdict.reasons)
    [done] = await _execute(rt, [ready])

    [(_, data)] = rt.calls
    assert ("executed", "cc.lee", signed) == (done.status, data.approved_by, data.approval)
    assert [] == rt.automatic  # a human approved it: not an automatic execution


async def test_an_approval_by_a_lower_role_than_required_opens_a_new_item() -> None:
    """An RN approving an action that needs an MD: judged again, it awaits approval a second time, unwritten."""
    rt = FakeRuntime()
    record, item = _awaiting(rt, task("reduce-service", confidence=1.0))
    [approved] = apply_received([record], [ReceivedDecision(decision=decide(item, role="rn"), approval=item)],
                                follow_up=_follow_up)
    [again], _ = _guard(rt, [approved])

    assert ("awaiting_approval", 2, ["md", "md"]) == (again.status, again.approval_requests,
                                                      [i.required_role for i in rt.requested])
    assert [] == [r for r in await _execute(rt, [again]) if r.status != "awaiting_approval"]
    assert [] == rt.calls


def test_an_edited_approval_runs_the_items_arguments_and_marks_the_record_edited() -> None:
    """The item's arguments (as edited by the approver) replace the action's; the planner's digest stays."""
    rt = FakeRuntime()
    record, item = _awaiting(rt, task(confidence=0.5))
    edited_args = item.arguments.model_copy(update={"description": "Call the member tomorrow morning"})
    edited = item.model_copy(update={"arguments": edited_args})
    [approved] = apply_received([record], [ReceivedDecision(decision=decide(edited, role="rn"), approval=edited)],
                                follow_up=_follow_up)

    assert ("approved", True, edited_args, record.proposed_digest) == (
        approved.status, approved.edited, approved.action.arguments, approved.proposed_digest)
    assert record.action.digest == approved.proposed_digest != approved.action.digest


def test_a_dual_signoff_carries_both_signed_decisions_and_the_senior_role() -> None:
    """MD sign-off then RN decision: approved by both, with the MD's authority and both decisions, sign-off first."""
    rt = FakeRuntime()
    record, item = _awaiting(rt, task("reduce-service", confidence=1.0))
    first = decide(item, approver="dr.rivera", role="md")
    signed_off = item.model_copy(update={"signoffs": [SignOff(approver="dr.rivera", role="md", at=NOON_NY,
                                                              digest=item.digest, decision=first)]})
    second = decide(signed_off, approver="rn.kim", role="rn")
    [approved] = apply_received([record], [ReceivedDecision(decision=second, approval=signed_off)],
                                follow_up=_follow_up)

    assert ("approved", "dr.rivera, rn.kim", "md") == (approved.status, approved.approved_by, approved.approver_role)
    assert [first.model_dump(mode="json"), second.model_dump(mode="json")] == approved.approval.decisions
    [ready], _ = _guard(rt, [approved])
    assert "ready" == ready.status


# --- rejected ----------------------------------------------------------------------

async def test_a_rejected_decision_ends_the_action_rejected_and_unwritten() -> None:
    """reject → rejected with the approver and the reason; no approval attached; guard and execute skip it."""
    rt = FakeRuntime()
    record, item = _awaiting(rt, task(confidence=0.5))
    [rejected] = apply_received([record], [ReceivedDecision(decision=decide(item, "reject"), approval=item)],
                                follow_up=_follow_up)

    assert ("rejected", "rejected by rn.kim: an active plan already exists", "rn.kim", None) == (
        rejected.status, rejected.reason, rejected.approved_by, rejected.approval)
    guarded, verdicts = _guard(rt, [rejected])
    done = await _execute(rt, guarded)
    assert (["rejected"], [], []) == ([r.status for r in done], verdicts, rt.calls)


# --- expired -----------------------------------------------------------------------

async def test_an_expired_approval_is_never_run_and_yields_a_follow_up_task() -> None:
    """expired → the action ends expired; a new urgent review Task for the queue is added, allowed and written."""
    rt = FakeRuntime()
    record, item = _awaiting(rt, task(confidence=0.5))
    escalated = item.model_copy(update={"escalation_level": 1, "queue": "care-coordination-lead"})
    out = apply_received([record], [ReceivedDecision(kind="expired", approval=escalated)], follow_up=_follow_up)

    [expired, follow_up] = out
    assert ("expired", "no decision before the SLA deadline in queue care-coordination-lead after 1 "
                       "escalation(s); not executed") == (expired.status, expired.reason)
    args = follow_up.action.arguments
    assert isinstance(args, CreateTaskArgs)
    assert ("a2-task-follow-up", "proposed", "expired-approval-review", "care-coordination-lead", "urgent",
            NOON_NY + timedelta(days=1)) == (follow_up.action.action_id, follow_up.status, args.kind, args.queue,
                                             args.priority, args.due)
    assert item.approval_id in args.description
    assert follow_up.proposed_digest == follow_up.action.digest

    guarded, _ = _guard(rt, out)
    done = await _execute(rt, guarded)
    assert (["expired", "executed"], ["a2-task-follow-up"]) == (
        [r.status for r in done], [d.idempotency_key.rsplit("/", 1)[-1] for _, d in rt.calls])


def test_the_follow_up_id_stays_a_valid_action_id_for_long_ids() -> None:
    """A 40-character action id still gives a valid follow-up id (cut to 40 characters)."""
    long_id = "a" * 40
    item = pending_item(task(confidence=0.5).model_copy(update={"action_id": long_id}), role="care_coordinator",
                        policy=POLICY, now=NOON_NY)

    assert f"{long_id}-follow-up"[:40] == expired_follow_up(item, NOON_NY).action.action_id


def test_a_decision_without_a_decision_leaves_the_action_as_it_was() -> None:
    """A 'decided' entry with no decision changes nothing (only decisions and expiries are applied)."""
    rt = FakeRuntime()
    record, item = _awaiting(rt, task(confidence=0.5))

    assert [record] == apply_received([record], [ReceivedDecision(decision=None, approval=item)],
                                      follow_up=_follow_up)


# --- tool failures, folds, deferrals, blocks ---------------------------------------------

async def test_a_tool_failure_fails_the_action_and_not_the_others() -> None:
    """A ToolFailure ends that action failed with 'type: message'; the next ready action is still written."""
    failing = task()
    other = task().model_copy(update={"action_id": "a4-task"})
    rt = FakeRuntime(outcomes={"a2-task": ToolFailure("MemberNotFound", "no member for this id")})
    done = await _execute(rt, [_record(failing, status="ready"), _record(other, status="ready")])

    assert [("failed", "MemberNotFound: no member for this id", None), ("executed", None, done[1].result)] == [
        (r.status, r.reason, r.result) for r in done]
    assert (2, ["a4-task"]) == (len(rt.calls), rt.automatic)


async def test_on_failure_may_reroute_a_failed_action() -> None:
    """on_failure sees the failure first; a status it sets (deferred) is kept instead of failed."""
    seen: list[str] = []
    later = NOON_NY + timedelta(hours=1)

    def on_failure(record: ActionRecord, failure: ToolFailure) -> None:
        seen.append(failure.error_type)
        record.status, record.not_before = "deferred", later

    rt = FakeRuntime(outcomes={"a2-task": ToolFailure("OutsideContactHours", "closed")})
    [done] = await _execute(rt, [_record(task(), status="ready")], on_failure=on_failure)

    assert (["OutsideContactHours"], "deferred", later, None) == (seen, done.status, done.not_before, done.reason)


async def test_a_write_folded_into_another_run_is_folded_not_executed() -> None:
    """folded_into set: the action ends folded with the reason naming the other write, never sampled."""
    rt = FakeRuntime(outcomes={"a2-task": WriteResult(reference="Communication/c-9", created=False,
                                                      folded_into="Communication/c-9")})
    [done] = await _execute(rt, [_record(task(), status="ready")])

    assert ("folded", folded_reason("Communication/c-9"), []) == (done.status, done.reason, rt.automatic)
    assert "Communication/c-9" in done.reason


def test_a_blocked_action_records_every_reason() -> None:
    """A block ends the action blocked, its reasons joined; no item is opened."""
    rt = FakeRuntime()
    facts = make_facts(opted_out=True)
    [record], [verdict] = guard_actions(
        rt, [_record(outreach())], [],
        judge=lambda r: evaluate_action(r.action, facts, POLICY, now=rt.now()), describe=_describe(rt))

    assert ("blocked", "; ".join(verdict.reasons), []) == (record.status, record.reason, rt.requested)
    assert "member opted out of outreach" in record.reason


def test_a_deferred_action_is_judged_again_only_once_due() -> None:
    """An SMS at night is deferred to the window's opening; before then guard skips it, at the opening it is ready."""
    rt = FakeRuntime(NIGHT_NY)
    [deferred], [verdict] = _guard(rt, [_record(outreach())])
    assert ("deferred", NEXT_MORNING_NY) == (deferred.status, deferred.not_before)
    assert verdict.defer_until == deferred.not_before

    rt.clock = NEXT_MORNING_NY - timedelta(minutes=1)
    [still], verdicts = _guard(rt, [deferred])
    assert ("deferred", NEXT_MORNING_NY, []) == (still.status, still.not_before, verdicts)

    rt.clock = NEXT_MORNING_NY
    [ready], [verdict] = _guard(rt, [still])
    assert ("ready", None, "allow") == (ready.status, ready.not_before, verdict.decision)


def test_verdicts_are_appended_to_the_runs_earlier_ones() -> None:
    """guard returns the earlier verdicts followed by one per action judged, in order."""
    rt = FakeRuntime()
    earlier = GuardrailVerdict(action_id="run", decision="allow", reasons=["within policy"],
                               policy_id=POLICY.policy_id)
    second = task(confidence=0.5).model_copy(update={"action_id": "a5-task"})
    _, verdicts = guard_actions(rt, [_record(task()), _record(second)], [earlier], judge=_judge(rt),
                                describe=_describe(rt))

    assert [("run", "allow"), ("a2-task", "allow"), ("a5-task", "require_approval")] == [
        (v.action_id, v.decision) for v in verdicts]


def test_a_required_role_defaults_to_md_when_the_verdict_names_none() -> None:
    """A require_approval verdict without a role opens the item for an MD (the safest reviewer)."""
    rt = FakeRuntime()
    roles: list[Role] = []

    def describe(record: ActionRecord, reasons: list[str], role: Role) -> PendingApproval:
        roles.append(role)
        return _describe(rt)(record, reasons, role)

    guard_actions(rt, [_record(task())], [], describe=describe,
                  judge=lambda r: GuardrailVerdict(action_id=r.action.action_id, decision="require_approval",
                                                   reasons=["asked"], policy_id=POLICY.policy_id))

    assert ["md"] == roles
