"""Every run ends with an outcome or a person told, on the real dev server: a cancel delivered mid-write, a
withdrawal of a parked run, and runs that cannot go on in both programs."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.exceptions import CancelledError

from runtime.search_attributes import STATUS
from runtime.settings import Settings
from store.connect import configured_database
from store.ledger import DecisionLedger
from store.sql_records import SqlCareRecordStore
from tests.conftest import ALWAYS_ASK, StartRun, wait_for_status
from tests.fhir_factory import make_member
from tests.pas_factory import MRI_NOTES_MET, make_pas_request
from worker import build_worker
from workflows.agent_run import WithdrawRequest, WithdrawResult
from workflows.outreach import MemberOutreachWorkflow
from workflows.outreach_client import start_outreach
from workflows.prior_auth import PriorAuthWorkflow
from workflows.prior_auth_models import PriorAuthInput

WRITE_SECONDS = 2.0


class SlowWrites(SqlCareRecordStore):
    """The real store, each write tool's write taking a while: a cancel can arrive while one runs."""

    def create_once(self, resources: Iterable[dict[str, Any]], idempotency_key: str) -> Any:  # noqa: ANN401
        time.sleep(WRITE_SECONDS)
        return super().create_once(resources, idempotency_key)

    def create_once_guarded(self, resources: Any, idempotency_key: str, **lock: Any) -> Any:  # noqa: ANN401
        time.sleep(WRITE_SECONDS)  # messages and notices (written under the member's contact lock)
        return super().create_once_guarded(resources, idempotency_key, **lock)


def _events(history: Any) -> list[Any]:  # noqa: ANN401
    return list(history.events)


async def _write_started(client: Client, workflow_id: str, timeout: float = 30.0) -> None:
    """Until the TCM Task's write is running on the worker (a started pending activity; history records the
    start only with the completion)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        described = await client.get_workflow_handle(workflow_id).describe()
        if any(a.activity_type.name == "tools.create_task" and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
               for a in described.raw_description.pending_activities):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no write started")


@pytest.mark.slow
async def test_a_cancel_during_a_write_ends_the_run_cancelled_with_nothing_written_after_it(
        client: Client, settings: Settings) -> None:
    """Cancel while the TCM Task is being written: the Task's write finishes (and is known), no other write is
    scheduled after the cancel request, the run ends CANCELLED, the ledger says withdrawn, status is final."""
    store = SlowWrites(configured_database(settings))
    member = make_member(store)
    queue = f"cancel-{uuid.uuid4().hex[:8]}"
    async with build_worker(client, settings, store, task_queue=queue):
        handle, _ = await start_outreach(client, member_id=member.member_id, encounter_id=member.encounter_id,
                                         policy=ALWAYS_ASK.model_copy(update={"min_confidence": 0.0}),
                                         task_queue=queue, initiated_by="care-ops-bot", tool_attempts=1,
                                         salt=settings.pseudonym_salt.get_secret_value())
        await _write_started(client, handle.id)
        await handle.cancel(reason="member moved to another plan")
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        assert isinstance(failure.value.cause, CancelledError)
        history = await handle.fetch_history()
        description = await handle.describe()

    events = _events(history)
    cancel_at = next(i for i, e in enumerate(events)
                     if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED)
    after = [e.activity_task_scheduled_event_attributes.activity_type.name for e in events[cancel_at:]
             if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert set(after) <= {"ledger.append"}, after
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED == events[-1].event_type
    # The write in flight finished and is in the store; nothing else was written.
    assert 1 == len(store.find_for_member("Task", member.member_id))
    assert [] == store.find_for_member("Communication", member.member_id)
    entries = DecisionLedger(configured_database(settings)).entries(handle.id)
    [withdrawn] = [e for e in entries if e.event == "withdrawn" and e.approval_id == "run"]
    assert ("temporal-cancel", "cancelled: member moved to another plan") == (withdrawn.actor, withdrawn.reason)
    assert "withdrawn" == description.typed_search_attributes.get(STATUS)


async def test_a_withdrawn_parked_run_closes_its_approvals_with_who_and_why(
        client: Client, start_run: StartRun, store, settings) -> None:  # noqa: ANN001
    """A parked run withdrawn by its source (an ADT A13): pending approvals close unexecuted, each with a ledger
    entry naming who and why; the run completes ``withdrawn`` and writes nothing."""
    member = make_member(store)
    handle = await start_run(member, policy=ALWAYS_ASK)
    status = await wait_for_status(handle, lambda s: s.status == "awaiting_approval")
    pending = sorted(p.approval_id for p in status.pending_approvals)
    result = await handle.execute_update(MemberOutreachWorkflow.withdraw, WithdrawRequest(
        actor="adt:GENHOSP", reason="A13 cancel discharge", source="GENHOSP"), result_type=WithdrawResult)
    outcome = await handle.result()

    assert (pending, "withdrawn") == (sorted(result.closed), result.status)
    assert "withdrawn" == outcome.status
    assert {"withdrawn"} == {a.status for a in outcome.actions}
    # Nothing the run proposed was written; a care manager confirms the withdrawal (the update is not signed).
    [task] = store.find_for_member("Task", member.member_id)
    assert "run-failure-review" == task["code"]["text"] and "withdrawn by adt:GENHOSP" in task["reasonCode"]["text"]
    assert [] == store.find_for_member("Communication", member.member_id)
    # Too late: refused (by the validator while the run closes, by Temporal once it completed), never lost.
    with pytest.raises((WorkflowUpdateFailedError, RPCError)):
        await handle.execute_update(MemberOutreachWorkflow.withdraw, WithdrawRequest(actor="someone", reason="late"))
    entries = [e for e in DecisionLedger(configured_database(settings)).entries(handle.id) if e.event == "withdrawn"]
    assert sorted([*pending, "run"]) == sorted(e.approval_id for e in entries)
    assert {"adt:GENHOSP"} == {e.actor for e in entries}
    assert all("A13 cancel discharge (from GENHOSP)" in (e.reason or "") for e in entries)


async def test_an_outreach_run_that_cannot_go_on_gives_a_person_a_task(start_run: StartRun, store, settings,
                                                                        client: Client) -> None:  # noqa: ANN001
    """An unknown member fails the run (MemberNotFound), but only after a care manager got a follow-up Task and the
    ledger a run_failed entry naming it; the status attribute is final."""
    member = make_member()  # never stored
    handle = await start_run(member)
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    [task] = store.find_for_member("Task", member.member_id)
    assert ("run-failure-review", "urgent") == (task["code"]["text"], task["priority"])
    assert "MemberNotFound" in task["reasonCode"]["text"]
    [entry] = [e for e in DecisionLedger(configured_database(settings)).entries(handle.id) if e.event == "run_failed"]
    assert f"Task/{task['id']}" in entry.reason
    assert "needs_attention" == (await handle.describe()).typed_search_attributes.get(STATUS)


async def test_a_prior_auth_run_that_cannot_go_on_gives_a_reviewer_a_task_within_its_clock(
        client: Client, submit, store, settings, task_queue: str) -> None:  # noqa: ANN001
    """A request whose stored Claim is gone cannot be reviewed: a UM reviewer gets a Task due by the CMS clock."""
    good = await submit(make_pas_request(store, notes=MRI_NOTES_MET))
    await good.result()
    started = (await good.fetch_history()).events[0].workflow_execution_started_event_attributes
    data = client.data_converter.payload_converter.from_payloads(started.input.payloads, [PriorAuthInput])[0]
    broken = data.model_copy(update={"submission": data.submission.model_copy(update={"claim_id": "gone-claim"}),
                                     "tool_attempts": 1})
    handle = await client.start_workflow(PriorAuthWorkflow.run, broken, id=f"prior-auth-broken-{uuid.uuid4().hex[:8]}",
                                         task_queue=task_queue)
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    tasks = [t for t in store.find_for_member("Task", data.submission.member_id)
             if t["code"]["text"] == "run-failure-review"]
    assert 1 == len(tasks)
    assert "Claim/gone-claim" == tasks[0]["focus"]["reference"]
    assert [("run_failed", "system")] == [(e.event, e.actor) for e in DecisionLedger(configured_database(settings))
                                          .entries(handle.id) if e.event == "run_failed"]
