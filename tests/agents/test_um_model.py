"""The model-backed determination recommender, end to end: real dev server, real worker, real ``openai`` client
talking HTTP to the scripted model server. Whatever the model argues, a denial waits for an MD and a second
reviewer, and an answer that cites nothing or invents a criterion is refused and goes to a human."""

from __future__ import annotations

import dataclasses
import json
from functools import partial

import pytest

from agents.generated_text import StoreIdentifiers
from agents.model_client import ModelConfig
from agents.prior_auth_model import ModelDeterminationRecommender
from agents.prior_auth_planner import RecommenderActivity
from tests.deciding import decide
from tests.model_server import ScriptedModelServer, argue_for_denial, completion, error
from tests.pas_factory import MRI_NOTES_MET, make_pas_request
from tests.prior_auth_runs import decision, pending
from workflows.prior_auth import PriorAuthWorkflow
from workflows.prior_auth_models import PriorAuthResult


@pytest.fixture
def recommender(model_server: ScriptedModelServer, store) -> RecommenderActivity:  # noqa: ANN001
    """This module's workers recommend determinations with the scripted model, reading members' identifiers from
    the session's store as the worker's recommender does."""
    config = ModelConfig(model="scripted-model", base_url=model_server.url, api_key="sk-test-not-a-real-key",
                         timeout_seconds=5.0, input_usd_per_mtok=2.5, output_usd_per_mtok=10.0)
    return RecommenderActivity(ModelDeterminationRecommender(dataclasses.replace(config),
                                                             identifiers=StoreIdentifiers(store)))


def _determination_calls(server: ScriptedModelServer) -> list[dict]:
    """The issue_determination arguments of every request's answer, as the server recorded the requests."""
    return [r for r in server.requests if any(t["function"]["name"] == "issue_determination" for t in r["tools"])]


async def test_a_model_that_follows_the_rules_approves_alone_and_sees_no_phi(
        submit, store, model_server: ScriptedModelServer) -> None:
    """Every criterion met: the model's approval is issued without a human; the model saw codes and counts only."""
    request = make_pas_request(store, notes=MRI_NOTES_MET)
    result: PriorAuthResult = await (await submit(request)).result()

    assert ("completed", "approve", None) == (result.status, result.determination, result.decided_by)
    assert "model:scripted-model" == result.planner
    [sent] = _determination_calls(model_server)
    body = json.dumps(sent)
    for secret in (request.member_id, request.claim_id, *(n[:40] for n in MRI_NOTES_MET)):
        assert secret not in body, f"{secret!r} reached the model"
    assert "conservative-therapy-6-weeks" in body  # criterion ids and counts do


async def test_a_model_arguing_for_denial_waits_for_an_md_and_a_second_reviewer(
        client, submit, store, model_server: ScriptedModelServer) -> None:
    """The notes meet every criterion but the model recommends denial: an MD and a second reviewer decide,
    told why; nothing is written before both have signed."""
    model_server.script(argue_for_denial)
    request = make_pas_request(store, notes=MRI_NOTES_MET)
    handle = await submit(request)
    item = await pending(handle)

    assert ("deny", "md", True) == (item.arguments.outcome, item.required_role, item.dual_signoff)
    reasons = " | ".join(item.reasons)
    assert "which the notes document as met" in reasons
    assert "the model recommends deny where the offline rules recommend approve" in reasons
    first = await decide(client, handle.id, decision(item, approver="dr.rivera", role="md"))
    assert "awaiting_second_signoff" == first.outcome
    assert [] == store.find_for_member("ClaimResponse", request.member_id)
    waiting = await pending(handle, required_role="rn")
    await decide(client, handle.id, decision(waiting, approver="rn.kim", role="rn"))
    result: PriorAuthResult = await handle.result()

    assert ("completed", "deny", "dr.rivera, rn.kim") == (result.status, result.determination, result.decided_by)


async def test_a_denial_citing_no_criteria_is_refused_and_the_repair_goes_to_a_human(
        submit, store, model_server: ScriptedModelServer) -> None:
    """First answer: deny with no criteria cited (refused, shown to the model); the repaired approval is not
    issued on its own: a reviewer checks it."""
    model_server.script(partial(argue_for_denial, cite=False))
    request = make_pas_request(store, notes=MRI_NOTES_MET)
    handle = await submit(request)
    item = await pending(handle)

    assert "approve" == item.arguments.outcome
    assert any("first answer was refused" in r and "criterion cited" in r for r in item.reasons), item.reasons
    repair = _determination_calls(model_server)[1]["messages"]
    assert any(m["role"] == "tool" and m["content"].startswith("refused:") for m in repair)


async def test_an_invented_criterion_twice_falls_back_to_the_rules_for_review(
        submit, store, model_server: ScriptedModelServer) -> None:
    """A model that cites a criterion the medical policy does not have, twice: the offline rules' recommendation,
    flagged for a human with the reason (the invented id unquoted)."""
    lines = [{"sequence": 1, "code": "72148", "decision": "denied"}]
    invented = completion([("issue_determination", {
        "outcome": "deny", "reason_codes": ["criteria-not-met"], "criteria_cited": ["prior-spine-surgery"],
        "items": lines, "explanation": "Not necessary.", "rationale": "No prior surgery."})])
    model_server.script(invented, invented)
    request = make_pas_request(store, notes=MRI_NOTES_MET)
    handle = await submit(request)
    item = await pending(handle)

    status = await handle.query(PriorAuthWorkflow.status)
    assert "model:scripted-model → offline-um-rules/1" == status.planner
    assert "approve" == item.arguments.outcome
    # The reason counts the invented id and lists the policy's own: it never quotes what the model wrote.
    assert any("unusable after one repair: 1 unknown criterion id cited" in r and "neurological-examination" in r
               for r in item.reasons), item.reasons
    assert "prior-spine-surgery" not in " ".join(item.reasons)


async def test_a_model_that_stays_down_gives_the_rules_recommendation_for_review(
        submit, store, model_server: ScriptedModelServer) -> None:
    """503 on every attempt the retry policy allows: no failed request, the rules recommend and a human reviews."""
    model_server.script(*(error(503, "overloaded") for _ in range(2)))
    request = make_pas_request(store, notes=MRI_NOTES_MET)
    handle = await submit(request, tool_attempts=2)
    item = await pending(handle)

    assert 2 == len(_determination_calls(model_server))
    assert any("could not recommend" in r and "503" in r for r in item.reasons), item.reasons
