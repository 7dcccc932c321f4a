"""A reconsideration's reviewer rule holds against whoever can reach Temporal: a run started directly with a forged
appeal (no earlier reviewers named) lets the physician who denied approve the reconsideration in the run, but the
worker reads who decided from the records store and refuses the write; the run ends needs_attention with a person
told, and no approval is written."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from guardrails.prior_auth_policy import PriorAuthPolicy
from store.submissions import SubmissionStore
from tests.deciding import decide
from tests.pas_factory import MRI_NOTES_AGAINST, make_pas_request
from tests.prior_auth_runs import decision, pending
from tools.appeals import stored_submission
from tools.pas_models import AppealOf
from workflows.prior_auth import PriorAuthWorkflow
from workflows.prior_auth_models import PriorAuthInput, PriorAuthResult


async def test_a_forged_appeal_cannot_let_the_denying_physician_decide_it(client, submit, store,  # noqa: ANN001
                                                                           task_queue) -> None:
    request = make_pas_request(store, notes=MRI_NOTES_AGAINST)
    handle = await submit(request)
    item = await pending(handle)
    await decide(client, handle.id, decision(item, approver="dr.rivera", role="md"))
    await decide(client, handle.id, decision(await pending(handle, required_role="rn"), approver="rn.kim", role="rn"))
    denied: PriorAuthResult = await handle.result()
    assert "deny" == denied.determination

    record = SubmissionStore(store.db).latest(request.claim_id)
    forged = AppealOf(claim_response=denied.claim_response, original_workflow_id=handle.id, reviewers=[],
                      filed_by="attacker", requester="Practitioner/x", filed_at=datetime.now(UTC))
    appeal = await client.start_workflow(
        PriorAuthWorkflow.run, PriorAuthInput(submission=stored_submission(store, record, []),
                                              policy=PriorAuthPolicy(), initiated_by="attacker", tool_attempts=1,
                                              appeal=forged),
        id=f"forged-appeal-{uuid.uuid4().hex[:8]}", task_queue=task_queue)
    try:
        reconsider = await pending(appeal)
        # The run was told nobody is excluded, so it takes the denying MD's (signed) decision...
        await decide(client, appeal.id, decision(reconsider, approver="dr.rivera", role="md"))
        if reconsider.dual_signoff:
            await decide(client, appeal.id, decision(await pending(appeal, required_role="rn"), approver="rn.ortiz",
                                                     role="rn"))
        result: PriorAuthResult = await appeal.result()
    finally:
        desc = await appeal.describe()
        if desc.status is not None and desc.status.name == "RUNNING":
            await appeal.terminate("test finished")
    # ... but the worker refuses to write it: dr.rivera decided the determination appealed (its notice says so).
    [outcome] = result.actions
    assert ("failed", None) == (outcome.status, outcome.reference)
    assert "dr.rivera decided" in (outcome.reason or "") and "took no part" in (outcome.reason or "")
    assert ("needs_attention", None) == (result.status, result.claim_response)
    tasks = [t for t in store.find_for_member("Task", request.member_id)
             if t["code"]["coding"][0]["code"] == "run-failure-review" and "issue_determination" in json.dumps(t)]
    assert 1 == len(tasks), "a person is told"
