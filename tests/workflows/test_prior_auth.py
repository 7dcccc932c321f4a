"""PriorAuthWorkflow end to end on the real dev server, real worker and real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from guardrails.policy import QueueRule, SlaRule
from guardrails.prior_auth_policy import PriorAuthPolicy
from runtime.errors import DecisionRefused
from store.fhir_validation import validate_resource
from store.sql_records import SqlCareRecordStore
from tests.deciding import decide
from tests.pas_factory import (
    HOME_HEALTH_NOTES_MET,
    MRI_NOTES_AGAINST,
    MRI_NOTES_MISSING_THERAPY,
    make_pas_request,
)
from tests.prior_auth_runs import decision, pending
from tools.criteria import criteria_for
from tools.determination import IssueDeterminationArgs, ItemDecision
from tools.pas_request import PriorAuthRequestError
from workflows.prior_auth_client import submit_prior_auth
from workflows.prior_auth_models import PriorAuthResult


def _stored(store: SqlCareRecordStore, reference: str) -> dict:
    rtype, rid = reference.split("/")
    resource = store.get(rtype, rid)
    assert resource is not None, f"{reference} is not in the store"
    validate_resource(resource)
    return resource


async def test_every_criterion_met_is_approved_without_a_human(submit, store) -> None:
    """A lumbar MRI whose notes document every criterion gets an approving ClaimResponse on its own."""
    request = make_pas_request(store)
    result: PriorAuthResult = await (await submit(request)).result()

    assert ("completed", "approve", None, False) == (
        result.status, result.determination, result.decided_by, result.overdue)
    response = _stored(store, result.claim_response)
    assert ("complete", "preauthorization", f"Claim/{request.claim_id}") == (
        response["outcome"], response["use"], response["request"]["reference"])
    assert response["preAuthRef"].startswith("PA-")
    assert ["allow"] == [v.decision for v in result.verdicts]


async def test_missing_documentation_is_pended_by_an_md(client, submit, store) -> None:
    """Undocumented therapy duration: the pend (it delays care) waits for an MD, then asks the provider."""
    request = make_pas_request(store, notes=MRI_NOTES_MISSING_THERAPY)
    handle = await submit(request)
    item = await pending(handle)
    assert ("pend", "md", "um-medical-review", False) == (
        item.arguments.outcome, item.required_role, item.queue, item.dual_signoff)
    assert ["conservative-therapy-6-weeks"] == item.arguments.requested_documentation

    with pytest.raises(DecisionRefused, match="needs role md"):
        await decide(client, handle.id, decision(item, approver="rn.kim", role="rn"))
    await decide(client, handle.id, decision(item, approver="dr.rivera", role="md"))
    status = await awaiting_documentation(handle)
    [issued] = [a for a in status.actions if a.tool == "issue_determination"]
    assert ("pend", "executed", "dr.rivera") == (status.determination, issued.status, issued.approved_by)
    # The time frame is extended by 14 days; the documentation is due one standard window before its end.
    request = status.decision_due - timedelta(days=21)
    assert status.documentation_due == request + timedelta(days=14)
    response = _stored(store, issued.reference)
    [task_ref] = store_related(store, issued.reference)
    task = _stored(store, task_ref)
    assert ("queued", "request-additional-information") == (response["outcome"], task["code"]["coding"][0]["code"])
    await handle.terminate("test finished")


async def awaiting_documentation(handle, timeout: float = 30.0):  # noqa: ANN001, ANN201 - PriorAuthStatus
    """The run's status once it waits for the provider's documentation after a pend."""
    import asyncio

    from workflows.prior_auth import PriorAuthWorkflow

    for _ in range(int(timeout / 0.1)):
        status = await handle.query(PriorAuthWorkflow.status)
        if status.status == "awaiting_documentation":
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{handle.id} is not waiting for documentation: {status.status}")


def store_related(store, claim_response: str) -> list[str]:
    """The information-request Task written with a pend's ClaimResponse."""
    response = _stored(store, claim_response)
    tasks = [r for r in store.find_for_member("Task", response["patient"]["reference"].split("/")[1])
             if r.get("focus", {}).get("reference") == response["request"]["reference"]]
    return [f"Task/{t['id']}" for t in tasks]


async def test_a_denial_needs_an_md_and_a_second_reviewer(client, submit, store) -> None:
    """Notes against the criteria: a denial recommendation, issued only after an MD and a distinct second reviewer."""
    request = make_pas_request(store, notes=MRI_NOTES_AGAINST)
    handle = await submit(request)
    item = await pending(handle)
    assert ("deny", "md", True, "urgent") == (item.arguments.outcome, item.required_role, item.dual_signoff,
                                              item.priority)
    assert item.arguments.criteria_cited and item.arguments.reason_codes == ["criteria-not-met"]
    assert "prior_auth" == item.context.kind and not all(c.status == "met" for c in item.context.criteria)

    with pytest.raises(DecisionRefused, match="needs role md"):
        await decide(client, handle.id, decision(item, approver="rn.kim", role="rn"))
    first = await decide(client, handle.id, decision(item, approver="dr.rivera", role="md"))
    assert "awaiting_second_signoff" == first.outcome
    waiting = await pending(handle, required_role="rn")
    with pytest.raises(DecisionRefused, match="second approver must be someone else"):
        await decide(client, handle.id, decision(waiting, approver="dr.rivera", role="md", reason="again"))
    await decide(client, handle.id, decision(waiting, approver="rn.kim", role="rn"))
    result: PriorAuthResult = await handle.result()

    assert ("completed", "deny", "dr.rivera, rn.kim") == (result.status, result.determination, result.decided_by)
    response = _stored(store, result.claim_response)
    assert "complete" == response["outcome"] and "preAuthRef" not in response
    reasons = [a["reason"]["coding"][0]["code"] for a in response["adjudication"]]
    assert ["criteria-not-met"] == reasons


async def test_an_md_overturns_a_denial_recommendation(client, submit, store) -> None:
    """The MD edits the recommendation to an approval; with the second sign-off the approval is issued."""
    request = make_pas_request(store, notes=MRI_NOTES_AGAINST)
    handle = await submit(request)
    item = await pending(handle)
    approve = IssueDeterminationArgs(
        outcome="approve", explanation="Overturned on physician review: red flags on examination.",
        items=[ItemDecision(sequence=i.sequence, code=i.code, decision="approved", approved_quantity=1)
               for i in item.arguments.items])
    first = await decide(client, handle.id, decision(item, "edit", approver="dr.rivera", role="md",
                                                      arguments=approve))
    assert "awaiting_second_signoff" == first.outcome
    waiting = await pending(handle, required_role="rn")
    await decide(client, handle.id, decision(waiting, approver="rn.kim", role="rn"))
    result: PriorAuthResult = await handle.result()

    assert ("completed", "approve") == (result.status, result.determination)
    assert [True] == [a.edited for a in result.actions]
    assert "complete" == _stored(store, result.claim_response)["outcome"]


async def test_an_overdue_request_escalates_and_expires_to_a_human(submit, store) -> None:
    """Past its due time the request climbs the queue chain and expires; nothing is decided by the clock."""
    request = make_pas_request(store, notes=MRI_NOTES_AGAINST, priority="stat")
    quick = {name: QueueRule(role=rule.role, sla=SlaRule(clock="calendar", duration=timedelta(seconds=1)),
                             escalate_to=rule.escalate_to)
             for name, rule in PriorAuthPolicy().approvals.queues.items()}
    policy = PriorAuthPolicy(approvals=PriorAuthPolicy().approvals.model_copy(update={"queues": quick}))
    handle = await submit(request, policy=policy)
    result: PriorAuthResult = await handle.result()

    assert ("needs_attention", None, None, True) == (
        result.status, result.determination, result.claim_response, result.overdue)
    statuses = {a.action_id: a.status for a in result.actions}
    assert {"d1-determination": "expired", "d1-determination-follow-up": "executed"} == statuses
    follow_up = _stored(store, next(a.reference for a in result.actions if a.status == "executed"))
    assert (f"Claim/{request.claim_id}", "expired-approval-review") == (
        follow_up["focus"]["reference"], follow_up["code"]["coding"][0]["code"])
    assert not [r for r in store.find_for_member("ClaimResponse", request.member_id)]


async def test_an_expedited_request_is_due_in_72_hours_and_clocks_stop_there(submit, store) -> None:
    """Expedited: due 72 h after receipt, and no queue deadline runs past it."""
    received = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=60)
    request = make_pas_request(store, service_code="G0299", notes=HOME_HEALTH_NOTES_MET, priority="stat")
    handle = await submit(request, policy=PriorAuthPolicy(auto_approve=False), received_at=received)
    item = await pending(handle)

    assert (received + timedelta(hours=72), received + timedelta(hours=72)) == (
        item.context.decision_due, item.sla_deadline)
    assert ("um-nurse-review-expedited", "rn") == (item.queue, item.required_role)


async def test_a_bundle_that_is_not_a_prior_auth_request_starts_nothing(client, task_queue, settings, store) -> None:
    """A Claim with use=claim is refused with the reason; no resource is stored and no run starts."""
    request = make_pas_request(store, claim_use="claim")
    with pytest.raises(PriorAuthRequestError, match="not a prior-authorization request"):
        await submit_prior_auth(client, store, request.bundle, criteria=criteria_for(settings),
                                policy=PriorAuthPolicy(), task_queue=task_queue,
                                salt=settings.pseudonym_salt.get_secret_value())
    assert store.get("Claim", request.claim_id) is None


async def test_the_same_request_twice_joins_the_first_run(client, task_queue, settings, store, submit) -> None:
    """A resubmitted request returns the run already started for it."""
    request = make_pas_request(store)
    first = await submit(request)
    handle, started, _ = await submit_prior_auth(
        client, store, request.bundle, criteria=criteria_for(settings), policy=PriorAuthPolicy(),
        task_queue=task_queue, salt=settings.pseudonym_salt.get_secret_value())
    assert (False, first.id) == (started, handle.id)
