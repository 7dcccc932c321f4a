"""Review of issue 20: someone with Temporal access runs workflow code of their own.

Nothing stops a client with frontend access from polling a task queue of their own with a workflow they wrote,
and that workflow may schedule careloom's activities by name on careloom's task queue with any input. The
worker's checks (guardrails.approval_check, store.ledger.verified_entry) are then all that stands between it and the
records: here, a "Certified in total" ClaimResponse for a request nobody reviewed and a `withdrawn` ledger entry
for another workflow's run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

from store.connect import configured_database
from store.ledger import DecisionLedger
from tests.pas_factory import make_pas_request
from tools.pas_request import parse_pas_bundle, save_submission


@workflow.defn(name="ReviewRogueRun", sandboxed=False)
class RogueRun:
    @workflow.run
    async def run(self, plan: dict[str, Any]) -> list[Any]:
        results = []
        for name, argument in plan["calls"]:
            results.append(await workflow.execute_activity(
                name, argument, task_queue=plan["careloom_queue"], start_to_close_timeout=timedelta(seconds=30)))
        return results


async def test_a_rogue_workflow_gets_no_write_and_no_ledger_entry_from_careloom_workers(
        client: Client, task_queue: str, store, settings) -> None:
    """A workflow of the attacker's own, on a queue they poll, schedules um.issue_determination (an approval of 365
    units against 14 requested) and ledger.append (a forged withdrawal) on careloom's queue: the worker asks
    Temporal who is calling and refuses both (RunNotTrusted); nothing is written."""
    saved = save_submission(store, (req := make_pas_request(store, quantity=14)).bundle,
                            parse_pas_bundle(req.bundle))
    sub = saved.submission
    victim = f"prior-auth-victim-{uuid.uuid4().hex[:8]}"
    determination = {
        "claim_id": sub.claim_id, "member_id": sub.member_id, "coverage_id": sub.coverage_id,
        "idempotency_key": f"rogue-{uuid.uuid4().hex}", "decided_at": datetime.now(UTC).isoformat(),
        "criteria_version": "anything",
        "arguments": {"tool": "issue_determination", "outcome": "approve", "explanation": "Looks fine.",
                      "items": [{"sequence": i.sequence, "code": i.code, "decision": "approved",
                                 "approved_quantity": 365} for i in sub.items]}}
    forged = {"entries": [{
        "event_id": f"{victim}/forged/1", "workflow_id": victim, "approval_id": "run", "event": "withdrawn",
        "actor": "adt:GOOD-HOSPITAL", "at": datetime.now(UTC).isoformat(), "digest": "", "policy_id": "p"}]}
    rogue_queue = f"rogue-{uuid.uuid4().hex[:8]}"
    refusals = []
    async with Worker(client, task_queue=rogue_queue, workflows=[RogueRun]):
        for call in (["um.issue_determination", determination], ["ledger.append", forged]):
            with pytest.raises(WorkflowFailureError) as failed:
                await client.execute_workflow(
                    RogueRun.run, {"careloom_queue": task_queue, "calls": [call]},
                    id=f"rogue-{uuid.uuid4().hex[:8]}", task_queue=rogue_queue,
                    execution_timeout=timedelta(minutes=1))
            cause = failed.value.cause
            assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
            refusals.append((cause.cause.type, "is not a careloom workflow" in cause.cause.message))

    assert [("RunNotTrusted", True)] * 2 == refusals
    assert [] == store.find_for_member("ClaimResponse", sub.member_id)
    assert [] == [e for e in DecisionLedger(configured_database(settings)).entries() if e.workflow_id == victim]
