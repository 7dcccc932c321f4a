"""MemberOutreachWorkflow end to end on the real dev server, real worker and real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B import get_fhir_model_class
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from guardrails.approvals import ApprovalDecision
from guardrails.policy import GuardrailPolicy
from store.fhir_validation import validate_resource
from store.sql_records import SqlCareRecordStore
from tests.conftest import ALWAYS_ASK, OPEN_WINDOW, StartRun, wait_for_status
from tests.deciding import decide
from tests.fhir_factory import HIGH_RISK, make_member
from tools.care_plan import DraftCarePlanArgs, GoalSpec
from tools.outreach import SendOutreachArgs
from tools.tasks import CreateTaskArgs
from store.approval_items import ApprovalItems
from workflows.inbox import DecisionRejected, list_pending_approvals
from workflows.outreach import MemberOutreachWorkflow
from workflows.outreach_client import start_outreach
from workflows.outreach_models import OutreachResult


def written(store: SqlCareRecordStore, reference: str) -> dict:
    rtype, rid = reference.split("/")
    resource = store.get(rtype, rid)
    assert resource is not None, f"{reference} is not in the store"
    return resource


def parked(status) -> bool:  # noqa: ANN001
    return status.status in ("awaiting_approval", "deferred")


async def test_moderate_risk_discharge_completes_without_a_human(start_run: StartRun, store) -> None:
    """A LACE 5 discharge gets a TCM task, a check-in SMS and a draft care plan, all within policy."""
    member = make_member(store)
    result: OutreachResult = await (await start_run(member)).result()

    assert "completed" == result.status
    assert 5 == result.lace
    assert {"a1-tcm-task": "executed", "a2-check-in": "executed", "a3-care-plan": "executed"} == {
        a.action_id: a.status for a in result.actions}
    task = written(store, result.actions[0].reference)
    assert ("Task", "requested", "routine") == (task["resourceType"], task["status"], task["priority"])
    communication = written(store, result.actions[1].reference)
    assert ("Communication", "SMS text message") == (communication["resourceType"], communication["medium"][0]["text"])
    plan = written(store, result.actions[2].reference)
    assert ("draft", "proposal") == (plan["status"], plan["intent"])
    assert all(v.policy_id == OPEN_WINDOW.policy_id for v in result.verdicts)


async def test_every_resource_written_validates_as_fhir_r4b(start_run: StartRun, store) -> None:
    """CarePlan, Goals, Task and Communication written by a run pass R4B and the value-set checks."""
    member = make_member(store)
    result = await (await start_run(member)).result()
    references = [a.reference for a in result.actions if a.reference]
    plan = written(store, next(r for r in references if r.startswith("CarePlan/")))
    references += [g["reference"] for g in plan["goal"]]
    assert 5 == len(references)  # task, communication, care plan, 2 goals
    for reference in references:
        resource = written(store, reference)
        validate_resource(resource)
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


async def test_high_risk_care_plan_waits_for_a_clinician_then_completes(
    start_run: StartRun, store, client: Client
) -> None:
    """LACE >= 10 parks the care plan for an RN; the other actions run; approval completes the run."""
    member = make_member(store, **HIGH_RISK)
    handle = await start_run(member)
    status = await wait_for_status(handle, parked)

    assert "awaiting_approval" == status.status
    assert 10 == status.lace
    [pending] = status.pending_approvals
    assert ("a3-care-plan.1", "draft_care_plan", "rn") == (pending.approval_id, pending.tool, pending.required_role)
    assert any("LACE 10" in r for r in pending.reasons)
    listed = await wait_for_listing(ApprovalItems(store.db), handle.id)
    assert pending.digest == listed.digest

    result = await decide(client, handle.id, ApprovalDecision(
        approval_id=pending.approval_id, digest=pending.digest, decision="approve", approver="rn.kim", role="rn"))
    assert ("approve", pending.digest) == (result.decision, result.approved_digest)
    outcome: OutreachResult = await handle.result()
    assert "completed" == outcome.status
    plan_action = next(a for a in outcome.actions if a.action_id == "a3-care-plan")
    assert ("executed", "rn.kim", "rn") == (plan_action.status, plan_action.approved_by, plan_action.approver_role)
    assert "approved by rn.kim" in written(store, plan_action.reference)["note"][0]["text"]


async def wait_for_listing(items: ApprovalItems, workflow_id: str, timeout: float = 15.0):  # noqa: ANN201
    """The projection is written with the run's next ledger append: wait until the run shows in the listing."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        found = [p for p in await list_pending_approvals(items) if p.workflow_id == workflow_id]
        if found:
            return found[0]
        await asyncio.sleep(0.3)
    raise AssertionError(f"{workflow_id} never appeared in list_pending_approvals")


async def test_rejection_needs_a_reason_and_writes_nothing(start_run: StartRun, store, client: Client) -> None:
    """A rejected care plan is recorded with who and why, and no CarePlan is written."""
    member = make_member(store, **HIGH_RISK)
    handle = await start_run(member)
    [pending] = (await wait_for_status(handle, parked)).pending_approvals
    with pytest.raises(ValueError, match="rejection needs a reason"):
        ApprovalDecision(approval_id=pending.approval_id, digest=pending.digest, decision="reject",
                         approver="rn.kim", role="rn")

    await decide(client, handle.id, ApprovalDecision(
        approval_id=pending.approval_id, digest=pending.digest, decision="reject", approver="rn.kim", role="rn",
        reason="member already has an active plan"))
    outcome = await handle.result()
    plan_action = next(a for a in outcome.actions if a.action_id == "a3-care-plan")
    assert ("rejected", None) == (plan_action.status, plan_action.reference)
    assert "member already has an active plan" in plan_action.reason
    assert [] == store.find_for_member("CarePlan", member.member_id)


async def test_edit_approves_the_edited_action_under_its_new_digest(start_run: StartRun, store, client) -> None:
    """An RN edits the plan's goals; the edited plan is written and its digest is the one approved."""
    member = make_member(store, **HIGH_RISK)
    handle = await start_run(member)
    [pending] = (await wait_for_status(handle, parked)).pending_approvals
    edited = DraftCarePlanArgs(title="Heart failure transition plan",
                               goals=[GoalSpec(description="Follow-up with cardiology in 5 days", due_in_days=5)])

    result = await decide(client, handle.id, ApprovalDecision(
        approval_id=pending.approval_id, digest=pending.digest, decision="edit", approver="rn.kim", role="rn",
        arguments=edited, reason="earlier cardiology visit"))
    outcome = await handle.result()

    plan_action = next(a for a in outcome.actions if a.action_id == "a3-care-plan")
    assert result.approved_digest == plan_action.digest != pending.digest
    assert (True, "executed") == (plan_action.edited, plan_action.status)
    plan = written(store, plan_action.reference)
    assert "Heart failure transition plan" == plan["title"]
    assert 1 == len(plan["goal"])


async def test_refused_decisions_change_nothing(start_run: StartRun, store, client: Client) -> None:
    """Unknown ids, stale digests, self-approval, a too-junior role and a tool-changing edit are refused."""
    member = make_member(store, **HIGH_RISK)
    handle = await start_run(member, initiated_by="nurse.ann")
    [pending] = (await wait_for_status(handle, parked)).pending_approvals
    base = {"approval_id": pending.approval_id, "digest": pending.digest, "decision": "approve",
            "approver": "rn.kim", "role": "rn"}
    cases = {
        "unknown approval": {**base, "approval_id": "a9-nothing.1"},
        "stale digest": {**base, "digest": "0" * 64},
        "may not approve": {**base, "approver": "nurse.ann"},
        "needs role rn": {**base, "role": "care_coordinator"},
        "must keep the tool": {**base, "decision": "edit", "arguments": SendOutreachArgs(
            channel="sms", template="post-discharge-check-in", message="hello")},
    }
    for expected, fields in cases.items():
        with pytest.raises(DecisionRejected, match=expected):
            await decide(client, handle.id, ApprovalDecision(**fields))

    status = await handle.query(MemberOutreachWorkflow.status)
    assert [pending.approval_id] == [p.approval_id for p in status.pending_approvals]
    history = await handle.fetch_history()
    accepted = [e for e in history.events if e.HasField("workflow_execution_update_accepted_event_attributes")]
    assert [] == accepted  # refusals never reached history


async def test_repeated_decision_is_idempotent_and_a_conflicting_one_is_refused(
    start_run: StartRun, store, client: Client
) -> None:
    """The same decision twice returns the first result; a different second decision is refused."""
    member = make_member(store, **HIGH_RISK)
    handle = await start_run(member, policy=ALWAYS_ASK)  # other approvals keep the run open
    status = await wait_for_status(handle, lambda s: len(s.pending_approvals) == 3)
    pending = next(p for p in status.pending_approvals if p.tool == "draft_care_plan")
    approve = ApprovalDecision(approval_id=pending.approval_id, digest=pending.digest, decision="approve",
                               approver="rn.kim", role="rn")
    first = await decide(client, handle.id, approve)
    again = await decide(client, handle.id, approve)
    assert first == again
    with pytest.raises(DecisionRejected, match="already decided"):
        await decide(client, handle.id, ApprovalDecision(
            approval_id=pending.approval_id, digest=pending.digest, decision="reject", approver="md.lee",
            role="md", reason="changed my mind"))
    status = await wait_for_status(handle, lambda s: {a.action_id: a.status for a in s.actions}[
        "a3-care-plan"] == "executed")
    assert 2 == len(status.pending_approvals)  # the other two are untouched


async def test_ineligible_member_stops_with_the_reason(start_run: StartRun, store) -> None:
    """Coverage that ended before the discharge stops the run before planning, with the date in the reason."""
    member = make_member(store, coverage_end="2001-12-31")
    result = await (await start_run(member)).result()
    assert ("ineligible", False, []) == (result.status, result.eligible, result.actions)
    assert "not eligible" in result.stop_reasons[0]


async def test_opted_out_member_gets_no_message(start_run: StartRun, store) -> None:
    """An active opt-out Consent blocks the SMS; the care manager task is still created."""
    member = make_member(store, opted_out=True)
    result = await (await start_run(member)).result()
    statuses = {a.action_id: a.status for a in result.actions}
    assert ("blocked", "executed") == (statuses["a2-check-in"], statuses["a1-tcm-task"])
    assert "opted out" in next(a.reason for a in result.actions if a.action_id == "a2-check-in")
    assert [] == store.find_for_member("Communication", member.member_id)


def window_opening_in(seconds: int, zone: str = "America/New_York") -> GuardrailPolicy:
    """A contact window that opens ``seconds`` from now, member-local, and the policy that uses it."""
    local = datetime.now(UTC).astimezone(ZoneInfo(zone))
    start = (local + timedelta(seconds=seconds)).time()
    if start < local.time():
        pytest.skip("too close to local midnight to build a window")
    end = (local + timedelta(hours=2)).time()
    return ALWAYS_ASK.model_copy(update={
        "contact_window_start": start.replace(microsecond=0),
        "contact_window_end": end if end > start else time.max,
    })


async def test_outreach_outside_tcpa_hours_is_deferred_not_sent_and_not_sent_to_approval(
    start_run: StartRun, store
) -> None:
    """Outside the contact window the SMS waits on a durable timer; only afterwards is approval asked."""
    policy = window_opening_in(15)  # generous: the run must reach its guard before the window opens, even on a loaded CI machine
    member = make_member(store)
    handle = await start_run(member, policy=policy)
    status = await wait_for_status(handle, lambda s: {a.action_id: a.status for a in s.actions}.get(
        "a2-check-in") == "deferred" and len(s.pending_approvals) == 2)

    assert {"a1-tcm-task.1", "a3-care-plan.1"} == {p.approval_id for p in status.pending_approvals}
    deferral = next(v for v in status.verdicts if v.action_id == "a2-check-in")
    assert "defer" == deferral.decision
    assert deferral.defer_until is not None and deferral.defer_until > datetime.now(UTC)
    assert [] == store.find_for_member("Communication", member.member_id)

    status = await wait_for_status(
        handle, lambda s: "a2-check-in.1" in {p.approval_id for p in s.pending_approvals}, timeout=30)
    assert "care_coordinator" == next(p for p in status.pending_approvals if p.approval_id == "a2-check-in.1").required_role


async def test_adverse_action_needs_an_md_and_a_second_reviewer_whatever_the_confidence(
    start_run: StartRun, store, client
) -> None:
    """Closing a deceased member's episode terminates a service: an MD signs off, then a second, distinct reviewer."""
    member = make_member(store, deceased=True)
    handle = await start_run(member)
    [pending] = (await wait_for_status(handle, parked)).pending_approvals
    assert ("create_task", "md", True, "medical-review") == (
        pending.tool, pending.required_role, pending.dual_signoff, pending.queue)
    assert pending.confidence >= OPEN_WINDOW.min_confidence
    approve = {"approval_id": pending.approval_id, "digest": pending.digest, "decision": "approve"}
    with pytest.raises(DecisionRejected, match="needs role md"):
        await decide(client, handle.id, ApprovalDecision(**approve, approver="rn.kim", role="rn"))

    first = await decide(client, handle.id, ApprovalDecision(**approve, approver="md.lee", role="md"))
    assert "awaiting_second_signoff" == first.outcome
    [waiting] = (await handle.query(MemberOutreachWorkflow.status)).pending_approvals
    assert (["md.lee"], "rn") == ([s.approver for s in waiting.signoffs], waiting.required_role)
    assert first == await decide(client, handle.id, ApprovalDecision(**approve, approver="md.lee", role="md"))
    with pytest.raises(DecisionRejected, match="second approver must be someone else") as refused:
        await decide(client, handle.id, ApprovalDecision(**approve, approver="md.lee", role="md", reason="again"))
    assert "forbidden" == refused.value.code

    second = await decide(client, handle.id, ApprovalDecision(**approve, approver="rn.kim", role="rn"))
    assert "approved" == second.outcome
    result = await handle.result()
    assert [("a1-close-episode", "executed", "md.lee, rn.kim")] == [
        (a.action_id, a.status, a.approved_by) for a in result.actions]


async def test_an_edit_that_makes_an_action_adverse_needs_an_md(start_run: StartRun, store, client) -> None:
    """An RN editing a routine task into a service reduction is refused: the edit is re-guarded."""
    member = make_member(store)
    handle = await start_run(member, policy=ALWAYS_ASK)
    status = await wait_for_status(handle, lambda s: len(s.pending_approvals) == 3)
    task = next(p for p in status.pending_approvals if p.tool == "create_task")
    adverse = task.arguments.model_copy(update={"kind": "reduce-service"})
    assert isinstance(adverse, CreateTaskArgs)
    with pytest.raises(DecisionRejected, match="needs role md"):
        await decide(client, handle.id, ApprovalDecision(
            approval_id=task.approval_id, digest=task.digest, decision="edit", approver="rn.kim", role="rn",
            arguments=adverse))


async def test_a_second_trigger_for_the_same_episode_does_not_start_a_second_run(
    start_run: StartRun, store, client: Client, task_queue: str, settings
) -> None:
    """The workflow id is the business key: starting again returns the existing run."""
    member = make_member(store)
    handle = await start_run(member)
    await handle.result()
    again, started = await start_outreach(client, member_id=member.member_id, encounter_id=member.encounter_id,
                                          policy=OPEN_WINDOW, task_queue=task_queue,
                                          salt=settings.pseudonym_salt.get_secret_value())
    assert (False, handle.id) == (started, again.id)
    assert member.member_id not in handle.id and member.encounter_id not in handle.id  # pseudonymous key
    runs = [w async for w in client.list_workflows(f'WorkflowId = "{handle.id}"')]
    assert 1 == len(runs)
    assert 1 == len(store.find_for_member("Task", member.member_id))


async def test_unknown_member_fails_the_run_with_member_not_found(start_run: StartRun, store) -> None:
    """A trigger naming a member the store does not know fails at once, non-retryable, not stuck."""
    member = make_member()  # never stored
    handle = await start_run(member)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert "MemberNotFound" == cause.type


async def test_an_episode_started_under_its_old_workflow_id_is_not_started_again(
    start_run: StartRun, store, client: Client, task_queue: str, settings
) -> None:
    """Runs started before ids were pseudonymous keep the business key: no second run, no second outreach."""
    from workflows.outreach_models import OutreachInput

    member = make_member(store)
    legacy_id = f"outreach-{member.member_id}-{member.encounter_id}"
    legacy = await client.start_workflow(
        MemberOutreachWorkflow.run, OutreachInput(member_id=member.member_id, encounter_id=member.encounter_id,
                                                  policy=OPEN_WINDOW, tool_attempts=1),
        id=legacy_id, task_queue=task_queue)
    await legacy.result()
    again, started = await start_outreach(client, member_id=member.member_id, encounter_id=member.encounter_id,
                                          policy=OPEN_WINDOW, task_queue=task_queue,
                                          salt=settings.pseudonym_salt.get_secret_value())
    assert (False, legacy_id) == (started, again.id)


async def test_an_episode_whose_old_id_run_was_terminated_starts_again_under_the_new_id(
    store, client: Client, task_queue: str, settings
) -> None:
    """As Temporal's reuse policy allows for new ids: a terminated (or failed, cancelled, timed-out) run
    under the old id does not hold the episode."""
    from workflows.outreach_models import OutreachInput

    member = make_member(store)
    legacy_id = f"outreach-{member.member_id}-{member.encounter_id}"
    legacy = await client.start_workflow(
        MemberOutreachWorkflow.run, OutreachInput(member_id=member.member_id, encounter_id=member.encounter_id,
                                                  policy=OPEN_WINDOW, tool_attempts=1),
        id=legacy_id, task_queue=task_queue)
    await legacy.terminate("test: an operator stopped it")
    handle, started = await start_outreach(client, member_id=member.member_id, encounter_id=member.encounter_id,
                                           policy=OPEN_WINDOW, task_queue=task_queue,
                                           salt=settings.pseudonym_salt.get_secret_value())
    try:
        assert started and handle.id != legacy_id
    finally:
        await handle.terminate("test cleanup")
