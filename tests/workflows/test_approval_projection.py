"""The approvals projection (store/approval_items.py, workflows/approval_projection.py) on the real dev server,
worker and records database: a parked run's items appear with the ledger append that records them, move when
escalated, and go when decided; the inbox pages them with one SQL query (no Temporal call: it is given no
client); a run writes only its own rows; the consistency check finds a terminated run's stale rows and a lost
row, and the rebuild repairs both."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from temporalio.client import Client

from guardrails.approvals import ApprovalDecision, PendingApproval
from store.approval_items import ApprovalItems, ItemChange, ItemQuery, apply_change
from tests.conftest import StartRun, wait_for_status
from tests.deciding import decide
from tests.fhir_factory import make_member
from guardrails.policy import GuardrailPolicy
from tests.guardrails.run_facts import task
from tests.workflows.approval_items import pending_item
from tests.workflows.test_approvals import ASK_ALL_FAST, ASK_ALL_SLOW
from workflows.approval_projection import check, item_change, item_row, rebuild
from workflows.approvals import ItemChanges
from workflows.inbox import InboxFilter, list_inbox


async def _rows_of(items: ApprovalItems, workflow_id: str, want, timeout: float = 20.0) -> list[PendingApproval]:  # noqa: ANN001
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        page = await asyncio.to_thread(items.page, ItemQuery(workflow_ids=[workflow_id]), limit=100)
        found = [PendingApproval.model_validate_json(i) for i in page.items]
        if want(found) or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.2)


async def test_items_appear_move_and_go_with_the_ledger(start_run: StartRun, store, client: Client) -> None:
    items = ApprovalItems(store.db)
    handle = await start_run(make_member(store), policy=ASK_ALL_FAST)
    status = await wait_for_status(handle, lambda s: len(s.pending_approvals) == 3)
    listed = await _rows_of(items, handle.id, lambda f: len(f) == 3)
    assert {p.approval_id: p.digest for p in status.pending_approvals} == {p.approval_id: p.digest for p in listed}
    # Escalated past its 2 s deadline: the row moves with the escalated entry.
    moved = await _rows_of(items, handle.id, lambda f: any(p.queue == "care-coordination-lead" for p in f))
    lifted = [p for p in moved if p.queue == "care-coordination-lead"]
    assert lifted and all(p.required_role == "rn" and p.escalation_level == 1 for p in lifted)
    await asyncio.wait_for(handle.result(), timeout=40)  # the chain ends: every item expires
    assert [] == await _rows_of(items, handle.id, lambda f: not f)


async def test_a_decision_removes_the_row_and_pages_are_keyset(start_run: StartRun, store, client: Client) -> None:
    items = ApprovalItems(store.db)
    handles = [await start_run(make_member(store), policy=ASK_ALL_SLOW) for _ in range(2)]
    for handle in handles:
        await wait_for_status(handle, lambda s: len(s.pending_approvals) == 3)
        await _rows_of(items, handle.id, lambda f: len(f) == 3)
    ours = {h.id for h in handles}
    seen, cursor = [], None
    while True:  # page through everything, two at a time: each item once, in (due, run, item) order
        page = await list_inbox(items, InboxFilter(), page_size=2, cursor=cursor)
        seen += [(i.sla_deadline, i.workflow_id, i.approval_id) for i in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert 6 == len([s for s in seen if s[1] in ours])

    [first] = [p for p in await _rows_of(items, handles[0].id, lambda f: True) if p.tool == "create_task"]
    await decide(client, handles[0].id, ApprovalDecision(
        approval_id=first.approval_id, digest=first.digest, decision="approve", approver="cc.lee",
        role="care_coordinator"))
    left = await _rows_of(items, handles[0].id, lambda f: len(f) == 2)
    assert first.approval_id not in {p.approval_id for p in left}
    coordinators = await list_inbox(items, InboxFilter(role="care_coordinator", max_role="rn"), page_size=500)
    assert all(i.required_role == "care_coordinator" for i in coordinators.items)
    assert first.approval_id not in {i.approval_id for i in coordinators.items if i.workflow_id == handles[0].id}


def test_a_run_writes_only_its_own_rows(store) -> None:  # noqa: ANN001
    """An item naming another workflow id (a forged or buggy run) is dropped: rows are keyed by the activity's
    own workflow id, from the server."""
    now = datetime.now(UTC)
    item = _sample_item()
    forged = item.model_copy(update={"workflow_id": "outreach-someone-else"})
    change = item_change(ItemChanges(open=[item, forged]), workflow_id=item.workflow_id, run_id="r1",
                         program="MemberOutreachWorkflow")
    assert [item.workflow_id] == [r.workflow_id for r in change.upserts]
    store.db.write(lambda db: apply_change(db, ItemChange(workflow_id="outreach-attacker", upserts=[
        item_row(forged, run_id="r9", program="MemberOutreachWorkflow")]), now))
    assert ("outreach-someone-else", "a1-tcm-task.1") not in ApprovalItems(store.db).keys()


def _sample_item() -> PendingApproval:
    return pending_item(task(confidence=0.5), role="care_coordinator", policy=GuardrailPolicy(),
                        now=datetime.now(UTC))


async def test_check_finds_stale_and_missing_rows_and_rebuild_repairs(start_run: StartRun, store,
                                                                       client: Client) -> None:
    items = ApprovalItems(store.db)
    kept, ended = [await start_run(make_member(store), policy=ASK_ALL_SLOW) for _ in range(2)]
    for handle in (kept, ended):
        await wait_for_status(handle, lambda s: len(s.pending_approvals) == 3)
        await _rows_of(items, handle.id, lambda f: len(f) == 3)
    await ended.terminate("an operator terminated it through Temporal")  # no entry closes its rows
    lost = (await _rows_of(items, kept.id, lambda f: True))[0]
    store.db.write(lambda db: db.rows("DELETE FROM approval_items WHERE workflow_id = :w AND approval_id = :a",
                                      {"w": kept.id, "a": lost.approval_id}))

    found = await check(client, items)
    assert {(ended.id, a) for a in ("a1-tcm-task.1", "a2-check-in.1", "a3-care-plan.1")} <= set(found.stale)
    assert (kept.id, lost.approval_id) in found.missing
    assert not found.consistent

    await rebuild(client, items)
    again = await check(client, items)
    assert not [s for s in again.stale if s[0] in (kept.id, ended.id)]
    assert not [m for m in again.missing if m[0] in (kept.id, ended.id)]
    assert 3 == len(await _rows_of(items, kept.id, lambda f: len(f) == 3))
    assert [] == await _rows_of(items, ended.id, lambda f: not f, timeout=0)
    await kept.terminate("test finished")
    await rebuild(client, items)
