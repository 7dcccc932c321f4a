"""ApprovalBook without a server: opening, clocks, escalation, expiry, validation and decisions."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from guardrails.actions import action_digest
from guardrails.approvals import ApprovalDecision, DecisionResult, PendingApproval, ReceivedDecision, SignOff
from guardrails.policy import ApprovalRouting, GuardrailPolicy, QueueRule, SlaRule
from runtime.errors import DecisionRefused
from store.ledger_entries import LedgerEntry
from tests.guardrails.run_facts import care_plan, task
from tests.workflows.approval_items import INITIATOR, WORKFLOW_ID, decide, pending_item
from tools.outreach import SendOutreachArgs
from workflows.approvals import ApprovalBook

NY = ZoneInfo("America/New_York")
MONDAY = datetime(2024, 12, 9, 10, 0, tzinfo=NY)
"""Monday 10:00 New York: 8 business hours end Tuesday 09:00, the reminder (6 h) is Monday 16:00."""
TUESDAY_9 = datetime(2024, 12, 10, 9, 0, tzinfo=NY)
MONDAY_16 = datetime(2024, 12, 9, 16, 0, tzinfo=NY)
POLICY = GuardrailPolicy()
CLOCK_EVENTS = {"requested", "reminded", "escalated", "expired"}


def no_edit_check(decision: ApprovalDecision, item: PendingApproval) -> None:
    """A program whose guardrails accept every edit."""


def book_with(*items: PendingApproval, policy: GuardrailPolicy = POLICY, now: datetime = MONDAY) -> ApprovalBook:
    book = ApprovalBook(policy, initiated_by=INITIATOR)
    book.open(list(items), now)
    return book


def accept(book: ApprovalBook, decision: ApprovalDecision, now: datetime = MONDAY) -> DecisionResult:
    """What the workflow does with a decision: validate, then apply."""
    book.validate(decision, check_edit=no_edit_check)
    return book.apply(decision, now)


def refusal(book: ApprovalBook, decision: ApprovalDecision, check_edit=no_edit_check) -> str:  # noqa: ANN001
    """The code the book refuses ``decision`` with."""
    with pytest.raises(DecisionRefused) as refused:
        book.validate(decision, check_edit=check_edit)
    return refused.value.code


def events(entries: list[LedgerEntry]) -> list[str]:
    return [e.event for e in entries]


def coordination_task(now: datetime = MONDAY, policy: GuardrailPolicy = POLICY) -> PendingApproval:
    """A low-confidence create_task: care-coordination queue, a care coordinator may decide."""
    return pending_item(task(), role="care_coordinator", policy=policy, now=now)


def clinical_plan(now: datetime = MONDAY, policy: GuardrailPolicy = POLICY) -> PendingApproval:
    """A high-risk care plan: clinical-review queue, needs an RN."""
    return pending_item(care_plan(), role="rn", policy=policy, now=now)


def adverse_task(now: datetime = MONDAY) -> PendingApproval:
    """A task that denies a service: medical-review, an MD and then a second distinct reviewer."""
    denial = task(service_effect="denies").model_copy(update={"action_id": "a4-deny-task"})
    return pending_item(denial, role="md", policy=POLICY, now=now)


# --- open ---------------------------------------------------------------------------------------------------

def test_open_makes_items_pending_in_order() -> None:
    """Opened items are pending in the order they were opened."""
    first, second = coordination_task(), clinical_plan()
    book = book_with(first, second)
    assert [first, second] == book.pending


def test_open_records_a_requested_entry_per_item_with_increasing_event_ids() -> None:
    """Each opened item gets a `requested` ledger entry from the system naming its tool, ids `<workflow>/<seq>`."""
    first, second = coordination_task(), clinical_plan()
    book = book_with(first, second)
    expected = [
        LedgerEntry(event_id=f"{WORKFLOW_ID}/1", workflow_id=WORKFLOW_ID, approval_id="a2-task.1",
                    event="requested", tool="create_task", actor="system", role=None, at=MONDAY, digest=first.digest,
                    queue="care-coordination", reason="confidence below policy minimum",
                    policy_id=POLICY.policy_id, confidence=first.confidence),
        LedgerEntry(event_id=f"{WORKFLOW_ID}/2", workflow_id=WORKFLOW_ID, approval_id="a3-care-plan.1",
                    event="requested", tool="draft_care_plan", actor="system", role=None, at=MONDAY,
                    digest=second.digest,
                    queue="clinical-review", reason="confidence below policy minimum",
                    policy_id=POLICY.policy_id, confidence=second.confidence),
    ]
    assert expected == book.take_ledger().entries


def test_requested_reason_joins_the_guardrail_reasons() -> None:
    """The `requested` entry's reason is every guardrail reason, joined with "; "."""
    item = pending_item(care_plan(), role="rn", policy=POLICY, now=MONDAY,
                        reasons=("LACE 12 >= 10", "confidence 0.6 < 0.75"))
    assert ["LACE 12 >= 10; confidence 0.6 < 0.75"] == [e.reason for e in book_with(item).take_ledger().entries]


def test_event_ids_keep_increasing_after_the_outbox_is_taken() -> None:
    """Sequence numbers continue across take_ledger calls, so a retried append never reuses an id."""
    book = book_with(coordination_task())
    book.take_ledger()
    book.open([clinical_plan()], MONDAY)
    assert [f"{WORKFLOW_ID}/2"] == [e.event_id for e in book.take_ledger().entries]


def test_take_ledger_empties_the_outbox() -> None:
    """A second take_ledger with nothing new returns no entries."""
    book = book_with(coordination_task())
    book.take_ledger()
    assert [] == book.take_ledger().entries


def test_next_wake_up_is_the_earliest_reminder_before_it_is_sent() -> None:
    """With a reminder still to send, the book wakes up at the reminder (before the deadline)."""
    item = coordination_task()
    assert (MONDAY_16, TUESDAY_9) == (item.remind_at, item.sla_deadline)
    assert MONDAY_16 == book_with(item).next_wake_up()


def test_next_wake_up_is_the_earliest_over_all_items() -> None:
    """Of several items the earliest clock wins, whichever item it belongs to."""
    later = coordination_task(now=MONDAY + timedelta(hours=1))
    earlier = clinical_plan(now=MONDAY)
    assert earlier.remind_at == book_with(later, earlier).next_wake_up()


def test_next_wake_up_is_the_deadline_once_reminded() -> None:
    """After the reminder only the SLA deadline remains to wake up for."""
    book = book_with(coordination_task())
    book.tick(MONDAY_16)
    assert TUESDAY_9 == book.next_wake_up()


def test_next_wake_up_is_none_with_nothing_pending() -> None:
    """An empty book has nothing to wake up for."""
    assert None is ApprovalBook(POLICY, initiated_by=INITIATOR).next_wake_up()


# --- clocks: reminders, escalation, expiry ----------------------------------------------------------------------

def test_tick_before_the_reminder_does_nothing() -> None:
    """A tick before remind_at changes no item and records nothing."""
    item = coordination_task()
    book = book_with(item)
    book.take_ledger()
    assert ([], [], [item]) == (book.tick(MONDAY_16 - timedelta(seconds=1)), book.take_ledger().entries, book.pending)


def test_tick_at_the_reminder_records_reminded_once() -> None:
    """At remind_at the item is marked reminded with one `reminded` entry; the next tick adds none."""
    book = book_with(coordination_task())
    book.take_ledger()
    first = book.tick(MONDAY_16)
    second = book.tick(MONDAY_16 + timedelta(minutes=5))
    assert (["reminded"], [], [True]) == (events(first), second, [p.reminded for p in book.pending])
    assert [("system", MONDAY_16, f"{WORKFLOW_ID}/2")] == [(e.actor, e.at, e.event_id) for e in book.take_ledger().entries]


def test_tick_returns_what_it_recorded() -> None:
    """tick returns exactly the entries it added to the outbox."""
    book = book_with(coordination_task())
    book.take_ledger()
    recorded = book.tick(MONDAY_16)
    assert recorded == book.take_ledger().entries


def test_past_the_deadline_the_item_escalates_to_the_next_tier() -> None:
    """Past its deadline a care-coordination item moves to care-coordination-lead: RN, fresh clock, level 1."""
    book = book_with(coordination_task())
    book.tick(MONDAY_16)
    book.take_ledger()
    book.tick(TUESDAY_9)
    moved = book.pending[0]
    # care-coordination-lead: 4 business hours from Tuesday 09:00, reminder after 3.
    assert ("care-coordination-lead", "rn", 1, False) == (
        moved.queue, moved.required_role, moved.escalation_level, moved.reminded)
    assert (datetime(2024, 12, 10, 13, 0, tzinfo=NY), datetime(2024, 12, 10, 12, 0, tzinfo=NY)) == (
        moved.sla_deadline, moved.remind_at)
    [entry] = book.take_ledger().entries
    assert ("escalated", "system", "care-coordination-lead", "SLA deadline passed; now in care-coordination-lead",
            TUESDAY_9) == (entry.event, entry.actor, entry.queue, entry.reason, entry.at)


def test_a_deadline_passed_unreminded_records_the_reminder_then_the_escalation() -> None:
    """A first tick past the deadline records the missed reminder, then the escalation."""
    book = book_with(coordination_task())
    book.take_ledger()
    assert ["reminded", "escalated"] == events(book.tick(TUESDAY_9 + timedelta(minutes=1)))


def test_escalation_is_not_a_decision() -> None:
    """An escalated item is still pending and nothing is handed to the agent."""
    book = book_with(coordination_task())
    book.tick(TUESDAY_9)
    assert (1, [], False) == (len(book.pending), book.take_decided(), book.has_outcomes)


def test_at_the_end_of_the_chain_the_item_expires() -> None:
    """Past the last tier's deadline the item leaves pending and comes out as expired, with a ledger reason."""
    book = book_with(coordination_task())
    book.tick(TUESDAY_9)  # -> care-coordination-lead, the end of the chain
    last = book.pending[0]
    book.take_ledger()
    book.tick(last.sla_deadline)
    assert [] == book.pending
    expired = book.take_decided()
    assert [ReceivedDecision(kind="expired", decision=None, approval=last.model_copy(update={"reminded": True}))] \
        == expired
    [entry] = [e for e in book.take_ledger().entries if e.event == "expired"]
    assert ("system", "care-coordination-lead", "escalation chain exhausted; nothing was executed") == (
        entry.actor, entry.queue, entry.reason)


def test_walking_the_whole_chain_never_approves() -> None:
    """Woken at every clock, an unanswered clinical item climbs every tier and expires; no tick approves it."""
    book = book_with(clinical_plan())
    woken: list[datetime] = []
    while book.pending and len(woken) < 20:
        woken.append(book.next_wake_up())
        book.tick(woken[-1])
    entries = book.take_ledger().entries
    assert ["requested", "reminded", "escalated", "reminded", "escalated", "reminded", "escalated",
            "reminded", "expired"] == events(entries)
    assert ["clinical-review", "clinical-review-lead", "medical-review", "medical-director"] == [
        e.queue for e in entries if e.event == "reminded"]
    outcomes = book.take_decided()
    assert [("expired", None, 3, "md")] == [
        (o.kind, o.decision, o.approval.escalation_level, o.approval.required_role) for o in outcomes]
    assert set() == set(events(entries)) - CLOCK_EVENTS
    assert (0, []) == (book.answers, book.pending)


def test_the_clock_of_each_tier_follows_its_rule() -> None:
    """clinical-review-lead counts business hours; medical-review and medical-director count calendar hours."""
    book = book_with(clinical_plan())
    tiers = [(p.queue, p.sla_deadline) for p in book.pending]
    while book.pending:
        book.tick(book.next_wake_up())
        tiers += [(p.queue, p.sla_deadline) for p in book.pending if (p.queue, p.sla_deadline) != tiers[-1]]
    tuesday_13 = datetime(2024, 12, 10, 13, 0, tzinfo=NY)
    assert [("clinical-review", TUESDAY_9),
            ("clinical-review-lead", tuesday_13),
            ("medical-review", tuesday_13 + timedelta(hours=72)),
            ("medical-director", tuesday_13 + timedelta(hours=96))] == tiers


# --- business and calendar SLA clocks ---------------------------------------------------------------------------

FRIDAY_15 = datetime(2024, 12, 6, 15, 0, tzinfo=NY)


def test_business_hours_item_opened_friday_afternoon_is_due_monday() -> None:
    """Opened Friday 15:00 in clinical-review (8 business hours): due Monday 14:00, reminded Monday 12:00."""
    item = book_with(clinical_plan(now=FRIDAY_15), now=FRIDAY_15).pending[0]
    assert (datetime(2024, 12, 9, 14, 0, tzinfo=NY), datetime(2024, 12, 9, 12, 0, tzinfo=NY)) == (
        item.sla_deadline, item.remind_at)


def test_business_hours_escalation_on_friday_afternoon_is_due_monday() -> None:
    """Escalated Friday 15:00 into care-coordination-lead (4 business hours), the item is due Monday 10:00."""
    thursday_16 = datetime(2024, 12, 5, 16, 0, tzinfo=NY)
    book = book_with(coordination_task(now=thursday_16), now=thursday_16)
    assert FRIDAY_15 == book.pending[0].sla_deadline
    book.tick(FRIDAY_15)
    moved = book.pending[0]
    assert (datetime(2024, 12, 9, 10, 0, tzinfo=NY), datetime(2024, 12, 9, 9, 0, tzinfo=NY)) == (
        moved.sla_deadline, moved.remind_at)


CALENDAR = GuardrailPolicy(approvals=ApprovalRouting(queues={
    "care-coordination": QueueRule(role="care_coordinator", sla=SlaRule(clock="calendar", duration=timedelta(hours=8)),
                                   escalate_to="weekend-desk"),
    "weekend-desk": QueueRule(role="rn", sla=SlaRule(clock="calendar", duration=timedelta(hours=24))),
    "clinical-review": QueueRule(role="rn", sla=SlaRule(duration=timedelta(hours=8))),
    "medical-review": QueueRule(role="md", sla=SlaRule(clock="calendar", duration=timedelta(hours=72))),
}))


def test_calendar_clock_does_not_skip_the_weekend() -> None:
    """On a calendar queue, Friday 15:00 + 8 h is Friday 23:00 and its escalation is due Saturday 23:00."""
    book = book_with(coordination_task(now=FRIDAY_15, policy=CALENDAR), policy=CALENDAR, now=FRIDAY_15)
    friday_23 = datetime(2024, 12, 6, 23, 0, tzinfo=NY)
    assert (friday_23, datetime(2024, 12, 6, 21, 0, tzinfo=NY)) == (
        book.pending[0].sla_deadline, book.pending[0].remind_at)
    book.tick(friday_23)
    moved = book.pending[0]
    assert ("weekend-desk", datetime(2024, 12, 7, 23, 0, tzinfo=NY), datetime(2024, 12, 7, 17, 0, tzinfo=NY)) == (
        moved.queue, moved.sla_deadline, moved.remind_at)


def test_ledger_entries_carry_the_policy_id_of_the_item() -> None:
    """Every entry names the policy that routed the item."""
    book = book_with(coordination_task(now=FRIDAY_15, policy=CALENDAR), policy=CALENDAR, now=FRIDAY_15)
    book.tick(datetime(2024, 12, 6, 23, 0, tzinfo=NY))
    assert {CALENDAR.policy_id} == {e.policy_id for e in book.take_ledger().entries}


# --- validate: refusals -----------------------------------------------------------------------------------------

def test_unknown_approval_is_not_found() -> None:
    """A decision on an approval the run does not have is refused as not_found."""
    book = book_with(coordination_task())
    assert "not_found" == refusal(book, decide(coordination_task(), approval_id="a9-nothing.1"))


def test_stale_digest_is_a_conflict() -> None:
    """A decision naming another digest than the item's current one is refused as conflict."""
    item = coordination_task()
    assert "conflict" == refusal(book_with(item), decide(item, digest="0" * 64))


@pytest.mark.parametrize("approver", [INITIATOR, "system"])
def test_self_approval_is_forbidden(approver: str) -> None:
    """Neither whoever started the run nor the system may decide its items."""
    item = coordination_task()
    assert "forbidden" == refusal(book_with(item), decide(item, approver=approver, role="md"))


def test_insufficient_role_is_forbidden() -> None:
    """A care coordinator may not decide an item that needs an RN."""
    item = clinical_plan()
    assert "forbidden" == refusal(book_with(item), decide(item, approver="cc.jones", role="care_coordinator"))


def test_a_higher_role_may_decide() -> None:
    """An MD may decide an item that needs a care coordinator."""
    item = coordination_task()
    book_with(item).validate(decide(item, approver="dr.rivera", role="md"), check_edit=no_edit_check)


def test_a_different_decision_after_a_final_one_is_a_conflict() -> None:
    """Once approved, a rejection of the same item by anyone is refused as conflict."""
    item = coordination_task()
    book = book_with(item)
    accept(book, decide(item))
    assert "conflict" == refusal(book, decide(item, "reject", approver="cc.jones", role="care_coordinator"))


def test_an_identical_repeat_returns_the_first_result() -> None:
    """Repeating the same decision is accepted; apply returns the first result and counts it once."""
    item = coordination_task()
    book = book_with(item)
    first = accept(book, decide(item))
    book.take_decided()
    book.take_ledger()
    book.validate(decide(item), check_edit=no_edit_check)
    again = book.apply(decide(item), MONDAY + timedelta(minutes=3))
    assert (first, 1, [], []) == (again, book.answers, book.take_decided(), book.take_ledger().entries)


def test_bulk_decision_with_another_tool_is_invalid() -> None:
    """A bulk decision for send_outreach cannot take a create_task item."""
    item = coordination_task()
    assert "invalid" == refusal(book_with(item), decide(item, bulk_tool="send_outreach"))


def test_bulk_decision_with_the_items_tool_is_accepted() -> None:
    """A homogeneous bulk approval of a care-coordination item is applied like a single one."""
    item = coordination_task()
    assert "approved" == accept(book_with(item), decide(item, bulk_tool="create_task")).outcome


@pytest.mark.parametrize("item", [
    pytest.param(adverse_task(), id="md-and-dual-sign-off"),
    pytest.param(pending_item(task(), role="md", policy=POLICY, now=MONDAY), id="md"),
    pytest.param(pending_item(task(), role="rn", policy=POLICY, now=MONDAY, dual_signoff=True), id="dual-sign-off"),
])
def test_bulk_decision_on_an_md_or_dual_sign_off_item_is_forbidden(item: PendingApproval) -> None:
    """Items that need an MD or two sign-offs must be decided one by one, even by an MD."""
    assert "forbidden" == refusal(book_with(item), decide(item, approver="dr.rivera", role="md",
                                                          bulk_tool="create_task"))


def test_reassign_to_an_unknown_queue_is_invalid() -> None:
    """A reassignment must name a queue of the policy."""
    item = coordination_task()
    assert "invalid" == refusal(book_with(item), decide(item, "reassign", queue="nowhere"))


def test_reassign_to_the_same_queue_is_invalid() -> None:
    """Reassigning an item to the queue it is in is refused."""
    item = coordination_task()
    assert "invalid" == refusal(book_with(item), decide(item, "reassign", queue="care-coordination"))


def test_edit_changing_the_tool_is_invalid_and_skips_the_program_check() -> None:
    """An edit must keep the tool; the program's guardrails are not even asked."""
    item = coordination_task()
    calls: list[str] = []
    edit = decide(item, "edit", arguments=SendOutreachArgs(channel="sms", template="post-discharge-check-in",
                                                           message="Hello from your care team."))
    assert ("invalid", []) == (refusal(book_with(item), edit, lambda d, i: calls.append(d.approval_id)), calls)


def edited_task_arguments(item: PendingApproval):  # noqa: ANN201
    return item.arguments.model_copy(update={"description": "Call the member today, then again in a week"})


def test_edits_are_checked_by_the_program() -> None:
    """validate hands an edit and the item it edits to the program's check."""
    item = coordination_task()
    edit = decide(item, "edit", arguments=edited_task_arguments(item))
    calls: list[tuple[ApprovalDecision, PendingApproval]] = []
    book_with(item).validate(edit, check_edit=lambda d, i: calls.append((d, i)))
    assert [(edit, item)] == calls


def test_only_edits_are_checked_by_the_program() -> None:
    """Approvals, rejections and reassignments do not call the edit check."""
    item = coordination_task()
    book = book_with(item)
    calls: list[str] = []
    for decision in (decide(item), decide(item, "reject"), decide(item, "reassign", queue="clinical-review")):
        book.validate(decision, check_edit=lambda d, i: calls.append(d.decision))
    assert [] == calls


def test_a_refusal_from_the_program_check_is_passed_on() -> None:
    """When the program's guardrails refuse an edit, validate refuses it with their code."""
    item = coordination_task()

    def needs_md(decision: ApprovalDecision, pending: PendingApproval) -> None:
        raise DecisionRefused("forbidden", "the edited action needs role md")

    edit = decide(item, "edit", arguments=edited_task_arguments(item))
    assert "forbidden" == refusal(book_with(item), edit, needs_md)


# --- apply ------------------------------------------------------------------------------------------------------

def test_approve_hands_the_item_to_the_agent() -> None:
    """An approval leaves pending and comes out of take_decided with the decision and the item."""
    item = coordination_task()
    book = book_with(item)
    approval = decide(item)
    result = accept(book, approval)
    assert DecisionResult(approval_id="a2-task.1", action_id="a2-task", decision="approve", outcome="approved",
                          approver="rn.kim", role="rn", reason=None, decided_at=MONDAY, approved_digest=item.digest,
                          queue="care-coordination") == result
    assert ([], True) == (book.pending, book.has_outcomes)
    assert [ReceivedDecision(decision=approval, approval=item)] == book.take_decided()
    assert [] == book.take_decided()


def test_approve_is_recorded_with_the_approver() -> None:
    """The `approved` entry names the approver, role, digest and queue."""
    item = coordination_task()
    book = book_with(item)
    book.take_ledger()
    accept(book, decide(item, reason="reviewed"))
    [entry] = book.take_ledger().entries
    assert ("approved", "rn.kim", "rn", item.digest, "care-coordination", "reviewed", f"{WORKFLOW_ID}/2") == (
        entry.event, entry.actor, entry.role, entry.digest, entry.queue, entry.reason, entry.event_id)


def test_reject_hands_a_rejection_to_the_agent() -> None:
    """A rejection leaves pending, approves no digest and is recorded with its reason."""
    item = coordination_task()
    book = book_with(item)
    book.take_ledger()
    rejection = decide(item, "reject")
    result = accept(book, rejection)
    assert ("rejected", None, []) == (result.outcome, result.approved_digest, book.pending)
    assert [ReceivedDecision(decision=rejection, approval=item)] == book.take_decided()
    assert [("rejected", "an active plan already exists")] == [(e.event, e.reason) for e in book.take_ledger().entries]


def test_edit_approves_the_edited_action_under_its_new_digest() -> None:
    """An edit approves the new arguments: the result and the handed-over item carry them and their digest."""
    item = coordination_task()
    book = book_with(item)
    book.take_ledger()
    arguments = edited_task_arguments(item)
    new_digest = action_digest(arguments)
    result = accept(book, decide(item, "edit", arguments=arguments))
    [received] = book.take_decided()
    assert ("edited", new_digest, []) == (result.outcome, result.approved_digest, book.pending)
    assert (arguments, new_digest) == (received.approval.arguments, received.approval.digest)
    assert [("edited", new_digest)] == [(e.event, e.digest) for e in book.take_ledger().entries]
    assert item.digest != new_digest


def test_reassign_moves_the_item_and_restarts_its_clock() -> None:
    """A reassigned item stays pending in the new queue with that queue's role and a fresh, unsent reminder."""
    item = coordination_task()
    book = book_with(item)
    book.tick(MONDAY_16)  # reminded in the old queue
    book.take_ledger()
    result = accept(book, decide(item, "reassign", queue="care-coordination-lead", reason="needs a nurse"),
                    now=MONDAY_16)
    [moved] = book.pending
    # care-coordination-lead: 4 business hours from Monday 16:00 (1 h Monday, 3 h Tuesday), reminder after 3.
    assert ("reassigned", "care-coordination-lead", None) == (result.outcome, result.queue, result.approved_digest)
    assert ("care-coordination-lead", "rn", False, 0, item.digest) == (
        moved.queue, moved.required_role, moved.reminded, moved.escalation_level, moved.digest)
    assert (datetime(2024, 12, 10, 11, 0, tzinfo=NY), datetime(2024, 12, 10, 10, 0, tzinfo=NY)) == (
        moved.sla_deadline, moved.remind_at)
    assert [("reassigned", "rn.kim", "rn", "care-coordination-lead", "needs a nurse")] == [
        (e.event, e.actor, e.role, e.queue, e.reason) for e in book.take_ledger().entries]
    assert ([], False) == (book.take_decided(), book.has_outcomes)


def test_reassigned_item_can_still_be_decided() -> None:
    """After a reassignment the item is decided in its new queue like any other."""
    item = coordination_task()
    book = book_with(item)
    accept(book, decide(item, "reassign", queue="clinical-review"))
    assert "approved" == accept(book, decide(item, approver="rn.lee")).outcome


def test_reassigning_back_to_a_queue_moves_the_item_again() -> None:
    """An item escalated out of the queue it was reassigned to can be reassigned there again (not a repeat)."""
    item = coordination_task()
    book = book_with(item)
    back = decide(item, "reassign", queue="clinical-review")
    accept(book, back)
    book.tick(book.pending[0].sla_deadline)  # clinical-review -> clinical-review-lead
    assert "clinical-review-lead" == book.pending[0].queue
    later = book.pending[0].sla_deadline - timedelta(hours=1)
    result = accept(book, back, now=later)
    assert ("clinical-review", "clinical-review", later) == (book.pending[0].queue, result.queue, result.decided_at)


# --- dual sign-off ----------------------------------------------------------------------------------------------

def test_adverse_item_needs_an_md_first() -> None:
    """A dual-sign-off adverse item opens in medical-review, needing an MD; an RN may not sign first."""
    item = adverse_task()
    assert ("medical-review", "md", True) == (item.queue, item.required_role, item.dual_signoff)
    assert "forbidden" == refusal(book_with(item), decide(item))


def test_first_sign_off_keeps_the_item_pending_for_a_second_reviewer() -> None:
    """The MD's approval is a sign-off: the item stays pending, now for the second sign-off role."""
    item = adverse_task()
    book = book_with(item)
    book.take_ledger()
    signed = decide(item, approver="dr.rivera", role="md")
    result = accept(book, signed)
    [waiting] = book.pending
    assert ("awaiting_second_signoff", item.digest) == (result.outcome, result.approved_digest)
    assert (POLICY.approvals.second_signoff_role, [SignOff(approver="dr.rivera", role="md", at=MONDAY,
                                                            digest=item.digest, decision=signed)]) == (
        waiting.required_role, waiting.signoffs)
    assert ([], [("signed_off", "dr.rivera")]) == (
        book.take_decided(), [(e.event, e.actor) for e in book.take_ledger().entries])


def test_the_first_signer_may_not_sign_again() -> None:
    """A second approval by the first signer (a new decision, not a repeat) is forbidden."""
    item = adverse_task()
    book = book_with(item)
    accept(book, decide(item, approver="dr.rivera", role="md"))
    assert "forbidden" == refusal(book, decide(item, approver="dr.rivera", role="md", reason="confirming"))


def test_an_identical_repeat_of_the_first_sign_off_does_not_count_as_the_second() -> None:
    """Repeating the first sign-off returns its result; the item still waits for someone else."""
    item = adverse_task()
    book = book_with(item)
    first = accept(book, decide(item, approver="dr.rivera", role="md"))
    again = accept(book, decide(item, approver="dr.rivera", role="md"))
    assert (first, 1, 1) == (again, len(book.pending), len(book.pending[0].signoffs))


def test_a_second_distinct_approver_completes_the_dual_sign_off() -> None:
    """After the MD, a distinct RN's approval approves the action; it leaves pending with both sign-offs on record."""
    item = adverse_task()
    book = book_with(item)
    accept(book, decide(item, approver="dr.rivera", role="md"))
    second = decide(item, approver="rn.kim", role="rn")
    result = accept(book, second, now=MONDAY + timedelta(hours=1))
    assert ("approved", item.digest, []) == (result.outcome, result.approved_digest, book.pending)
    [received] = book.take_decided()
    assert (second, ["dr.rivera"]) == (received.decision, [s.approver for s in received.approval.signoffs])


def test_an_edit_at_the_second_sign_off_does_not_bypass_dual_sign_off() -> None:
    """An edit by the second reviewer is refused: it would run an action only one person approved."""
    item = adverse_task()
    book = book_with(item)
    accept(book, decide(item, approver="dr.rivera", role="md"))
    edit = decide(item, "edit", approver="dr.chen", role="md", arguments=edited_task_arguments(item))
    assert ("forbidden", [], 1) == (refusal(book, edit), book.take_decided(), len(book.pending))


# --- the answers counter ----------------------------------------------------------------------------------------

def test_answers_count_each_accepted_decision_once() -> None:
    """Accepted decisions (sign-offs and reassignments too) count once; repeats and refusals do not."""
    task_item, plan_item, adverse = coordination_task(), clinical_plan(), adverse_task()
    book = book_with(task_item, plan_item, adverse)
    counts = [book.answers]
    accept(book, decide(task_item))
    counts.append(book.answers)
    accept(book, decide(task_item))  # identical repeat
    counts.append(book.answers)
    accept(book, decide(plan_item, "reassign", queue="clinical-review-lead"))
    counts.append(book.answers)
    refusal(book, decide(plan_item, approver=INITIATOR))
    counts.append(book.answers)
    accept(book, decide(adverse, approver="dr.rivera", role="md"))
    counts.append(book.answers)
    accept(book, decide(adverse, approver="rn.kim", role="rn"))
    counts.append(book.answers)
    assert [0, 1, 1, 2, 2, 3, 4] == counts


def test_clock_events_are_not_answers() -> None:
    """Reminders, escalations and expiry are not decisions."""
    book = book_with(coordination_task())
    while book.pending:
        book.tick(book.next_wake_up())
    assert 0 == book.answers
