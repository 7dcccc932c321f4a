"""The pend loop on the real dev server: a pended request waits for the provider's documentation (a completed
DTR QuestionnaireResponse, stored, handed to the run by the ``answer_pend`` update) and is reviewed again with
the attested answers as cited evidence; an answer nobody stored, or one for another request, counts for nothing;
no answer by the due time gives a person a Task; a withdrawal while waiting ends the run."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from guardrails.prior_auth_policy import PriorAuthPolicy
from tests.deciding import decide
from tests.dtr_answers import completed_response
from tests.pas_factory import MRI_NOTES_MISSING_THERAPY, make_pas_request
from tests.prior_auth_runs import decision, pending
from tests.workflows.test_prior_auth import awaiting_documentation
from tools.pas_models import PendAnswer
from workflows.agent_run import WithdrawRequest
from workflows.prior_auth import PriorAuthWorkflow
from workflows.prior_auth_models import PriorAuthResult

THERAPY = "conservative-therapy-6-weeks"


async def _pended(client, submit, store, **submit_options):  # noqa: ANN001, ANN202
    request = make_pas_request(store, notes=MRI_NOTES_MISSING_THERAPY)
    handle = await submit(request, **submit_options)
    item = await pending(handle)
    assert ("pend", [THERAPY]) == (item.arguments.outcome, item.arguments.requested_documentation)
    await decide(client, handle.id, decision(item, approver="dr.rivera", role="md"))
    return request, handle, await awaiting_documentation(handle)


def _store_answer(store, request, answers: dict[str, bool], *, claim_id: str | None = None,  # noqa: ANN001
                  response_id: str = "qr-answer-1") -> str:
    response = completed_response(claim_id or request.claim_id, request.member_id, answers, response_id=response_id)
    stored, _ = store.create_once([response], f"test-answer/{response_id}")
    return stored[0]["id"]


def _answer(response_id: str) -> PendAnswer:
    return PendAnswer(questionnaire_response=response_id, submitted_by="cc.jones", received_at=datetime.now(UTC))


async def test_an_attested_answer_closes_the_pend_and_the_request_is_approved(client, submit, store) -> None:
    """The provider attests the missing criterion: the run reviews again and approves on its own (every criterion
    met, one with the attested answer), under the extended time frame, in a new ClaimResponse."""
    request, handle, waiting = await _pended(client, submit, store)
    pend_response = waiting.actions[0].reference
    stored = _store_answer(store, request, {THERAPY: True}, response_id=f"qr-{request.claim_id}")
    accepted = await handle.execute_update(PriorAuthWorkflow.answer_pend, _answer(stored))
    assert (1, waiting.decision_due) == (accepted.round, accepted.decision_due)

    result: PriorAuthResult = await handle.result()
    assert ("completed", "approve", None) == (result.status, result.determination, result.decided_by)
    assert result.claim_response != pend_response
    assert [stored] == result.documentation
    assert result.extended_from == waiting.decision_due - timedelta(days=14)
    assert result.decision_due == waiting.decision_due and not result.overdue
    assert [("d1-determination", "executed")] == [(a.action_id, a.status) for a in result.earlier_actions]
    assert ["r1-d1-determination"] == [a.action_id for a in result.actions]
    approval = store.get(*result.claim_response.split("/"))
    assert ("complete", f"Claim/{request.claim_id}") == (approval["outcome"], approval["request"]["reference"])
    assert approval["preAuthRef"].startswith("PA-")
    assert "queued" == store.get(*pend_response.split("/"))["outcome"]  # the pend as issued stays on record


async def test_a_no_answer_goes_to_a_physician_with_the_attester_cited(client, submit, store) -> None:
    """The provider attests the criterion is not met: a denial recommendation for an MD, whose item cites the
    answer and who attested it."""
    request, handle, _ = await _pended(client, submit, store)
    stored = _store_answer(store, request, {THERAPY: False}, response_id=f"qr-no-{request.claim_id}")
    await handle.execute_update(PriorAuthWorkflow.answer_pend, _answer(stored))
    item = await pending(handle, action_id="r1-d1-determination")
    assert ("deny", "md") == (item.arguments.outcome, item.required_role)
    [therapy] = [c for c in item.context.criteria if c.criterion_id == THERAPY]
    assert "not_met" == therapy.status
    assert any(f"QuestionnaireResponse/{stored}" in c and "(attested by Practitioner/pr-attesting)" in c
               for c in therapy.contrary), therapy


async def test_an_answer_of_another_request_counts_for_nothing(client, submit, store) -> None:
    """Whoever can reach Temporal hands the run a response stored for another request: the review does not count
    it (it re-checks the stored response), so the same pend is proposed again, to an MD."""
    request, handle, _ = await _pended(client, submit, store)
    other = make_pas_request(store, notes=MRI_NOTES_MISSING_THERAPY)
    foreign = _store_answer(store, other, {THERAPY: True}, response_id=f"qr-foreign-{request.claim_id}")
    await handle.execute_update(PriorAuthWorkflow.answer_pend, _answer(foreign))
    item = await pending(handle, action_id="r1-d1-determination")
    assert ("pend", [THERAPY], "md") == (item.arguments.outcome, item.arguments.requested_documentation,
                                         item.required_role)
    # The run is under review now: another answer is refused until it pends again.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(PriorAuthWorkflow.answer_pend, _answer(foreign))
    assert "not waiting for documentation" in str(refused.value.cause)


async def test_no_answer_by_the_due_time_gives_a_person_the_request(client, submit, store) -> None:
    """The documentation is due (a 1-day extension, received a day ago): the run ends needs_attention with a UM
    reviewer's Task, never a decision by the clock; a late answer is refused."""
    policy = PriorAuthPolicy(pend_extension_days=1)
    received = datetime.now(UTC) - timedelta(days=1) + timedelta(seconds=25)
    request, handle, waiting = await _pended(client, submit, store, policy=policy, received_at=received)
    assert waiting.documentation_due == received + timedelta(days=1)
    result: PriorAuthResult = await asyncio.wait_for(handle.result(), timeout=60)
    assert ("needs_attention", "pend") == (result.status, result.determination)
    tasks = [t for t in store.find_for_member("Task", request.member_id)
             if t["code"]["coding"][0]["code"] == "run-failure-review"]
    assert 1 == len(tasks) and "no documentation answered the pend" in json.dumps(tasks[0])
    with pytest.raises(RPCError, match="already completed"):  # closed: too late to answer
        await handle.execute_update(PriorAuthWorkflow.answer_pend, _answer("qr-late"))


async def test_a_withdrawal_while_waiting_ends_the_run_withdrawn(client, submit, store) -> None:
    """The provider takes the request back while it waits for documentation."""
    _, handle, _ = await _pended(client, submit, store)
    await handle.execute_update("withdraw", WithdrawRequest(actor="cc.jones", reason="service cancelled"))
    result: PriorAuthResult = await handle.result()
    assert ("withdrawn", "pend") == (result.status, result.determination)
