"""PHI in what the prior-authorization model writes, and model-written values quoted into review reasons (review of
issue 21). On the real dev server with the scripted model: a determination whose explanation names the member is
never issued as it was (the explanation becomes the ClaimResponse's disposition the provider reads, automatically
when auto-approve is on); a reason code naming the member refuses the model's recommendation; and a refused first
answer's tool name, criterion id or reason code (model-written strings) never reaches the reasons a reviewer reads,
the run's history or the ledger. The outreach planner's refused first answer likewise."""

from __future__ import annotations

import dataclasses
import json

import pytest
from temporalio.client import Client

from agents.generated_text import StoreIdentifiers
from agents.model_client import ModelConfig
from agents.prior_auth_model import ModelDeterminationRecommender
from agents.prior_auth_planner import RecommenderActivity
from tests.conftest import StartRun, wait_for_status
from tests.deciding import decide
from tests.fhir_factory import HIGH_RISK, make_member
from tests.model_server import Reply, ScriptedModelServer, follow_the_prompt
from tests.pas_factory import MRI_NOTES_MET, make_pas_request
from tests.prior_auth_runs import decision, pending
from workflows.prior_auth_models import PriorAuthResult

GIVEN, FAMILY, BIRTH = "Jos\u00e9", "O'Brien-Vrellquist", "1941-07-04"
LEAKS = ("Jose", "José", "O'Brien", "OBrien", "Vrellquist", "vrellquist", "obrien", "4 Jul 41")


@pytest.fixture
def recommender(model_server: ScriptedModelServer, store) -> RecommenderActivity:  # noqa: ANN001
    """This module's workers recommend determinations with the scripted model, reading identifiers from the store."""
    config = ModelConfig(model="scripted-model", base_url=model_server.url, api_key="sk-test-not-a-real-key",
                         timeout_seconds=5.0)
    return RecommenderActivity(ModelDeterminationRecommender(dataclasses.replace(config),
                                                             identifiers=StoreIdentifiers(store)))


def _member(store, **scenario):  # noqa: ANN001, ANN202
    """A member whose name and birth date are in the records store (and in the request's Patient)."""
    member = make_member(**scenario)
    patient = next(r for r in member.resources if r["resourceType"] == "Patient")
    patient.update({"name": [{"family": FAMILY, "given": [GIVEN]}], "birthDate": BIRTH})
    store.put_many(member.resources)
    return member


def _leaks(blob: str) -> list[str]:
    return [value for value in LEAKS if value in blob]


async def _history_bytes(handle) -> str:  # noqa: ANN001
    """Every event of the run's history as the server stores it (the session's server is unencrypted)."""
    return b"".join(e.SerializeToString() for e in (await handle.fetch_history()).events).decode("latin-1")


def _determination(request, **changes: object) -> Reply:  # noqa: ANN001
    """The determination the prompt asks for, with ``changes`` to its arguments."""
    reply = follow_the_prompt(request)
    [call] = reply.body["choices"][0]["message"]["tool_calls"]
    call["function"]["arguments"] = json.dumps({**json.loads(call["function"]["arguments"]), **changes})
    return reply


async def test_an_explanation_naming_the_member_is_never_issued_nor_shown(
        client: Client, submit, store, model_server: ScriptedModelServer) -> None:
    """Every criterion met, the model approves (auto-approve on) with the member's name and birth date, in other
    spellings, in its explanation and rationale: the run waits for a reviewer, told why without the values; the
    history and the issued ClaimResponse hold the offline rules' text."""
    model_server.script(lambda request: _determination(
        request, explanation="Approved for Jose O'Brien, born 4 Jul 41: every criterion is met.",
        rationale="Mr Vrellquist's notes document six weeks of therapy."))
    request = make_pas_request(store, member=_member(store), notes=MRI_NOTES_MET)
    handle = await submit(request)
    item = await pending(handle)

    assert "approve" == item.arguments.outcome
    assert ("planner asks for review: model text contained the member's name and the member's birth date; replaced "
            "by the offline rules' text") in item.reasons
    assert [] == _leaks(item.model_dump_json()) == _leaks(await _history_bytes(handle))
    await decide(client, handle.id, decision(item, approver="rn.kim", role=item.required_role))
    result: PriorAuthResult = await handle.result()

    assert ("completed", "approve") == (result.status, result.determination)
    [response] = store.find_for_member("ClaimResponse", request.member_id)
    assert response["disposition"].startswith("Certified in total. ")
    assert [] == _leaks(json.dumps(response)) == _leaks(await _history_bytes(handle))


async def test_a_reason_code_naming_the_member_refuses_the_models_recommendation(
        submit, store, model_server: ScriptedModelServer) -> None:
    """A code has no approved text to stand in for it: the offline rules' recommendation goes to a reviewer with
    the reason (kinds, not values), and the model is not asked again."""
    model_server.script(lambda request: _determination(request, reason_codes=["criteria-not-met", "obrien-1941"]))
    request = make_pas_request(store, member=_member(store), notes=MRI_NOTES_MET)
    handle = await submit(request)
    item = await pending(handle)

    assert 1 == len(model_server.requests)
    assert ("planner asks for review: model text contained the member's name outside the free-text fields: the "
            "model's recommendation was not kept") in item.reasons
    assert [] == item.arguments.reason_codes
    assert [] == _leaks(item.model_dump_json()) == _leaks(await _history_bytes(handle))


def _invented_tool(request) -> Reply:  # noqa: ANN001
    reply = follow_the_prompt(request)
    reply.body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] = "lookup_vrellquist"
    return reply


@pytest.mark.parametrize(("first", "said"), [
    (_invented_tool, "an unknown tool was called; call issue_determination"),
    (lambda request: _determination(request, criteria_cited=["obrien-vrellquist-1941"], outcome="deny",
                                    reason_codes=["criteria-not-met"],
                                    items=[{"sequence": 1, "code": "72148", "decision": "denied"}]),
     "1 unknown criterion id cited (not in the medical policy); use only these ids: "),
    (lambda request: _determination(request, reason_codes=["Jose OBrien"]),
     "invalid arguments: (root): Value error, reason_codes[0] is not a code"),
    (lambda request: _determination(request, items=[{"sequence": 1, "code": "vrellquist", "decision": "approved",
                                                     "approved_quantity": 1}]),
     "decide exactly the request's lines [(1, '72148')]; the answer decided 1 line, 1 not in the request"),
], ids=["tool-name", "criterion-id", "reason-code", "line-code"])
async def test_a_refused_first_answer_is_described_without_quoting_the_model(
        first, said: str, submit, store, model_server: ScriptedModelServer) -> None:
    """The repaired approval goes to a reviewer: the reason says what was wrong with the first answer, never what
    the model wrote there (here the member's name). The model itself is told which values it may use."""
    model_server.script(first, follow_the_prompt)
    request = make_pas_request(store, member=_member(store), notes=MRI_NOTES_MET)
    handle = await submit(request)
    item = await pending(handle)

    reasons = " | ".join(item.reasons)
    assert f"the model's first answer was refused ({said}" in reasons, reasons
    assert [] == _leaks(reasons) == _leaks(await _history_bytes(handle))
    assert 2 == len(model_server.requests)


def _outreach_with_a_named_tool(request) -> Reply:  # noqa: ANN001
    """The plan the prompt asks for plus a call to a tool named after the member, its call id naming them too."""
    reply = follow_the_prompt(request)
    message = reply.body["choices"][0]["message"]
    message["tool_calls"].append({"id": "call_vrellquist", "type": "function", "function": {
        "name": "notify_obrien_vrellquist", "arguments": json.dumps({"rationale": "tell the family"})}})
    return reply


async def test_the_outreach_planner_describes_a_refused_call_without_its_name_or_id(
        start_run: StartRun, store, model_server: ScriptedModelServer) -> None:
    """A refused first answer calls a tool the agent does not have, named after the member: the repaired plan's
    reason says "an unknown tool" and quotes neither the name nor the call id; the model is told which call."""
    model_server.script(_outreach_with_a_named_tool, follow_the_prompt)
    handle = await start_run(_member(store, **HIGH_RISK))
    status = await wait_for_status(handle, lambda s: s.status == "awaiting_approval")

    reasons = " | ".join(r for p in status.pending_approvals for r in p.reasons)
    assert ("the model's first answer was refused (an unknown tool: this tool is not available to this agent; use "
            "one of create_task, send_outreach, draft_care_plan)") in reasons, reasons
    assert [] == _leaks(repr(status)) == _leaks(await _history_bytes(handle))
    repair = model_server.requests[1]["messages"]
    assert any("(call call_vrellquist)" in m["content"] for m in repair if m["role"] == "user")



def test_the_workers_recommender_reads_the_members_identifiers(settings, store) -> None:  # noqa: ANN001
    """worker.recommender_for with the worker's store: the model recommender reads each member's identifiers
    (the worker's wiring, not this module's fixture); without a model, the offline rules write no free text."""
    from worker import recommender_for

    member = _member(store)
    activity = recommender_for(settings.model_copy(update={"model": "scripted-model"}), store)
    identifiers = activity._model._identifiers(member.member_id)
    assert ("Jose", FAMILY) == identifiers.names
    assert activity._model is not None and recommender_for(settings, store)._model is None
