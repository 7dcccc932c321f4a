"""Approval queues across runs: SLA clocks, escalation, expiry, reassignment, bulk decisions, the ledger."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.client import Client

from guardrails.approvals import ApprovalDecision
from guardrails.policy import ApprovalRouting, QueueRule, SlaRule
from store.connect import configured_database
from store.ledger import DecisionLedger
from tests.conftest import OPEN_WINDOW, StartRun, wait_for_status
from tests.deciding import TEST_SIGNER, chain_problems, decide
from tests.fhir_factory import HIGH_RISK, make_member
from store.approval_items import ApprovalItems
from workflows.inbox import BulkItem, DecisionRejected, InboxFilter, decide_bulk, list_inbox
from workflows.outreach import MemberOutreachWorkflow


def seconds(n: float) -> SlaRule:
    return SlaRule(clock="calendar", duration=timedelta(seconds=n))


FAST = ApprovalRouting(queues={
    "care-coordination": QueueRule(role="care_coordinator", sla=seconds(2), escalate_to="care-coordination-lead"),
    "care-coordination-lead": QueueRule(role="rn", sla=seconds(2)),
    "clinical-review": QueueRule(role="rn", sla=seconds(3)),
    "medical-review": QueueRule(role="md", sla=seconds(3)),
})
SLOW = ApprovalRouting(queues={
    "care-coordination": QueueRule(role="care_coordinator", sla=seconds(600)),
    "clinical-review": QueueRule(role="rn", sla=seconds(600)),
    "medical-review": QueueRule(role="md", sla=seconds(600)),
    "rn-float-pool": QueueRule(role="rn", sla=seconds(900)),
})
ASK_ALL_FAST = OPEN_WINDOW.model_copy(update={"min_confidence": 0.999, "approvals": FAST})
ASK_ALL_SLOW = OPEN_WINDOW.model_copy(update={"min_confidence": 0.999, "approvals": SLOW})


async def test_unanswered_approvals_escalate_then_expire_into_a_human_task_never_approved(
    start_run: StartRun, store, settings
) -> None:
    """Past its deadline an item is reminded, escalated to the next tier, and at the chain's end cancelled
    with a follow-up Task; the action itself never runs."""
    member = make_member(store)
    handle = await start_run(member, policy=ASK_ALL_FAST)
    status = await wait_for_status(handle, lambda s: len(s.pending_approvals) == 3)
    task_item = next(p for p in status.pending_approvals if p.tool == "create_task")
    assert ("care-coordination", "care_coordinator", 0) == (task_item.queue, task_item.required_role,
                                                             task_item.escalation_level)
    escalated = await wait_for_status(handle, lambda s: any(
        p.escalation_level == 1 for p in s.pending_approvals), timeout=20)
    lifted = next(p for p in escalated.pending_approvals if p.escalation_level == 1)
    assert ("care-coordination-lead", "rn") == (lifted.queue, lifted.required_role)

    result = await asyncio.wait_for(handle.result(), timeout=40)

    assert "needs_attention" == result.status
    outcomes = {a.action_id: a.status for a in result.actions}
    assert {"a1-tcm-task": "expired", "a2-check-in": "expired", "a3-care-plan": "expired",
            "a1-tcm-task-follow-up": "executed", "a2-check-in-follow-up": "executed",
            "a3-care-plan-follow-up": "executed"} == outcomes
    assert [] == store.find_for_member("Communication", member.member_id)
    assert [] == store.find_for_member("CarePlan", member.member_id)
    kinds = sorted(t["code"]["text"] for t in store.find_for_member("Task", member.member_id))
    assert ["expired-approval-review"] * 3 == kinds
    events = [(e.approval_id, e.event) for e in DecisionLedger(configured_database(settings)).entries(handle.id)]
    assert [("a1-tcm-task.1", e) for e in ("requested", "reminded", "escalated", "reminded", "expired")] == [
        x for x in events if x[0] == "a1-tcm-task.1"]


async def test_reassign_moves_the_item_and_restarts_its_clock(start_run: StartRun, store, client: Client) -> None:
    """A supervisor reassigns an item to another queue; it keeps its digest and needs at least its role."""
    member = make_member(store, **HIGH_RISK)
    handle = await start_run(member, policy=OPEN_WINDOW.model_copy(update={"approvals": SLOW}))
    [item] = (await wait_for_status(handle, lambda s: len(s.pending_approvals) == 1)).pending_approvals
    assert "clinical-review" == item.queue
    with pytest.raises(DecisionRejected, match="unknown queue") as unknown:
        await decide(client, handle.id, ApprovalDecision(approval_id=item.approval_id, digest=item.digest,
                                                         decision="reassign", approver="rn.kim", role="rn",
                                                         queue="nowhere"))
    assert "invalid" == unknown.value.code
    result = await decide(client, handle.id, ApprovalDecision(
        approval_id=item.approval_id, digest=item.digest, decision="reassign", approver="rn.kim", role="rn",
        queue="rn-float-pool", reason="team at capacity"))
    assert ("reassigned", "rn-float-pool") == (result.outcome, result.queue)
    [moved] = (await handle.query(MemberOutreachWorkflow.status)).pending_approvals
    assert ("rn-float-pool", item.digest, "rn") == (moved.queue, moved.digest, moved.required_role)
    assert moved.sla_deadline > item.sla_deadline


async def test_inbox_lists_across_runs_with_filters_sorted_by_deadline_and_paginated(
    start_run: StartRun, store, client: Client
) -> None:
    """Runs parked for approval are listed from the approvals projection: filter by queue and role, earliest
    deadline first, keyset pages."""
    handles = [await start_run(make_member(store), policy=ASK_ALL_SLOW) for _ in range(3)]
    for handle in handles:
        await wait_for_status(handle, lambda s: len(s.pending_approvals) == 3)
    ours = {h.id for h in handles}
    items = ApprovalItems(store.db)

    async def mine(filters: InboxFilter, page_size: int = 500) -> list:
        deadline = asyncio.get_running_loop().time() + 15
        while True:  # the projection is written with each run's next ledger append
            page = await list_inbox(items, filters, page_size=page_size)
            found = [i for i in page.items if i.workflow_id in ours]
            if len({i.workflow_id for i in found}) == 3 or asyncio.get_running_loop().time() > deadline:
                return found
            await asyncio.sleep(0.3)

    clinical = await mine(InboxFilter(queue="clinical-review"))
    assert {"draft_care_plan"} == {i.tool for i in clinical}
    assert 3 == len(clinical)
    coordinators = await mine(InboxFilter(role="care_coordinator"))
    assert 6 == len(coordinators)
    assert [i.sla_deadline for i in coordinators] == sorted(i.sla_deadline for i in coordinators)

    first = await list_inbox(items, InboxFilter(role="care_coordinator"), page_size=1)
    assert first.next_cursor is not None and first.total_items >= 6
    second = await list_inbox(items, InboxFilter(role="care_coordinator"), page_size=1, cursor=first.next_cursor)
    assert (first.items[0].sla_deadline, first.items[0].workflow_id, first.items[0].approval_id) < (
        second.items[0].sla_deadline, second.items[0].workflow_id, second.items[0].approval_id)
    with pytest.raises(ValueError, match="cursor must be a value returned by a previous page"):
        await list_inbox(items, InboxFilter(), cursor="12")


async def test_bulk_approve_validates_each_item_and_reports_each_result(
    start_run: StartRun, store, client: Client
) -> None:
    """Bulk-approving task items works item by item: a stale digest, a different tool and an MD item fail alone."""
    handles = [await start_run(make_member(store), policy=ASK_ALL_SLOW) for _ in range(3)]
    statuses = [await wait_for_status(h, lambda s: len(s.pending_approvals) == 3) for h in handles]
    tasks = [next(p for p in s.pending_approvals if p.tool == "create_task") for s in statuses]
    plan = next(p for p in statuses[0].pending_approvals if p.tool == "draft_care_plan")
    items = [BulkItem(workflow_id=t.workflow_id, approval_id=t.approval_id, digest=t.digest) for t in tasks]
    items[2] = items[2].model_copy(update={"digest": "f" * 64})
    items.append(BulkItem(workflow_id=plan.workflow_id, approval_id=plan.approval_id, digest=plan.digest))

    results = await decide_bulk(client, items, decision="approve", tool="create_task", approver="rn.kim", role="rn",
                                signer=TEST_SIGNER)

    assert [True, True, False, False] == [r.ok for r in results]
    assert ["conflict", "invalid"] == [r.error_code for r in results[2:]]
    assert all(r.result.outcome == "approved" for r in results[:2])
    left = await handles[0].query(MemberOutreachWorkflow.status)
    assert {"a2-check-in.1", "a3-care-plan.1"} == {p.approval_id for p in left.pending_approvals}


async def test_every_request_and_decision_is_in_the_hash_chained_ledger(
    start_run: StartRun, store, client: Client, settings
) -> None:
    """Requests and decisions land in the ledger with who, role, digest and policy; verify finds the chain intact."""
    member = make_member(store, **HIGH_RISK)
    handle = await start_run(member)
    [item] = (await wait_for_status(handle, lambda s: len(s.pending_approvals) == 1)).pending_approvals
    await decide(client, handle.id, ApprovalDecision(approval_id=item.approval_id, digest=item.digest,
                                                     decision="reject", approver="rn.kim", role="rn",
                                                     reason="duplicate of an active plan"))
    await handle.result()
    ledger = DecisionLedger(configured_database(settings))
    entries = ledger.entries(handle.id)
    assert [("requested", "system", None), ("rejected", "rn.kim", "rn")] == [(e.event, e.actor, e.role)
                                                                             for e in entries]
    assert {item.digest} == {e.digest for e in entries}
    assert {OPEN_WINDOW.policy_id} == {e.policy_id for e in entries}
    checked, _ = ledger.verify()
    assert (True, []) == (checked >= 2, chain_problems(ledger, handle.id))
