"""PHI in model-written text (issue 21.3): a schema-valid plan whose texts carry the member's name, birth date and
MRN. On the real dev server with the scripted model: the text is replaced by the approved template text inside the
planner activity, so it is never sent, never in the run's history, never in the inbox's item or approvals query;
the reviewer is told why without the values being quoted."""

from __future__ import annotations

import json

from temporalio.client import Client

from agents.offline_planner import CHECK_IN_MESSAGE
from guardrails.approvals import ApprovalDecision
from tests.agents.conftest import model_planner
from tests.conftest import StartRun, wait_for_status
from tests.deciding import decide
from tests.fhir_factory import HIGH_RISK, make_member
from tests.model_server import ScriptedModelServer, completion, follow_the_prompt
from workflows.inbox import get_approval

NAME, FAMILY, BIRTH, MRN = "Ozymandra", "Vrellquist", "1931-07-19", "MRN-CNRY-55213"
LEAKS = (NAME, FAMILY, "07/19/1931", "1931", MRN)


def _member(store, **scenario):  # noqa: ANN001, ANN202
    member = make_member(**scenario)
    patient = next(r for r in member.resources if r["resourceType"] == "Patient")
    patient.update({"name": [{"family": FAMILY, "given": [NAME]}], "birthDate": BIRTH,
                    "identifier": [{"type": {"text": "MRN"}, "system": "urn:careloom:test:mrn", "value": MRN}]})
    store.put_many(member.resources)
    return member


def _leaky_plan(request):  # noqa: ANN001, ANN202
    """The plan the prompt asks for, schema-valid, with the member's identifiers in the message, the task's
    description and the rationale (a model that knows, or guesses, who the member is)."""
    reply = follow_the_prompt(request)
    for call in reply.body["choices"][0]["message"]["tool_calls"]:
        args = json.loads(call["function"]["arguments"])
        if call["function"]["name"] == "send_outreach":
            args["message"] = f"Hello {NAME} {FAMILY} (born 07/19/1931, {MRN}): your care team is checking in."
            args["rationale"] = f"{NAME} prefers text messages."
        if call["function"]["name"] == "create_task":
            args["description"] = f"Call {NAME} {FAMILY}, DOB July 19, 1931, about medications"
        call["function"]["arguments"] = json.dumps(args)
    return reply


def _leaks(blob: str) -> list[str]:
    return [value for value in LEAKS if value in blob]


async def _history_bytes(handle) -> str:  # noqa: ANN001
    """Every event of the run's history as the server stores it (payload bytes raw, not base64 as in to_json);
    the session's server is unencrypted, so plaintext would show."""
    return b"".join(e.SerializeToString() for e in (await handle.fetch_history()).events).decode("latin-1")


async def test_a_message_with_the_members_name_birth_date_and_mrn_is_never_sent_nor_shown(
    start_run: StartRun, store, client: Client, model_server: ScriptedModelServer
) -> None:
    """The scripted model writes the member's name, birth date and MRN into a schema-valid message and task: the
    run's history, its pending items, the approvals query and the inbox item hold the approved template text and
    a reason naming what was found; after approval the member gets the template text, not the model's."""
    model_server.script(_leaky_plan)
    member = _member(store, **HIGH_RISK)
    handle = await start_run(member)
    status = await wait_for_status(handle, lambda s: s.status == "awaiting_approval")

    pending = {p.tool: p for p in status.pending_approvals}
    assert CHECK_IN_MESSAGE == pending["send_outreach"].arguments.message
    assert "Interactive post-discharge contact (TCM)" in pending["create_task"].arguments.description
    reason = ("planner asks for review: model text contained the member's name, the member's birth date and the "
              "member's MRN or other identifier; replaced by the approved template text")
    assert reason in pending["send_outreach"].reasons
    assert ("planner asks for review: model text contained the member's name and the member's birth date; replaced "
            "by the approved template text") in pending["create_task"].reasons
    queried = await handle.query("approvals")
    item = await get_approval(client, handle.id, pending["send_outreach"].approval_id)
    history = await _history_bytes(handle)
    assert "checking in after your recent hospital stay" in history  # the scan reads the payloads
    assert [] == _leaks(repr(queried)) == _leaks(item.model_dump_json()) == _leaks(history)
    assert "07/19/1931" not in repr(status)

    for p in status.pending_approvals:
        await decide(client, handle.id, ApprovalDecision(approval_id=p.approval_id, digest=p.digest,
                                                         decision="approve", approver="rn.kim", role=p.required_role))
    result = await handle.result()
    assert "completed" == result.status
    sent = next(a for a in result.actions if a.tool == "send_outreach")
    communication = store.get(*sent.reference.split("/"))
    assert CHECK_IN_MESSAGE == communication["payload"][0]["contentString"]
    assert [] == _leaks(str(communication)) == _leaks(str(store.get(*result.actions[0].reference.split("/"))))
    assert [] == _leaks(await _history_bytes(handle))


async def test_phi_is_never_sent_back_to_the_model(store, model_server: ScriptedModelServer) -> None:
    """Identifiers the model wrote are replaced, not repaired: one request, and it carried no identifier."""
    from tests.agents.test_model_planner import INPUT

    model_server.script(_leaky_plan)
    member = _member(store)
    facts = INPUT.facts.model_copy(update={"member": INPUT.facts.member.model_copy(
        update={"member_id": member.member_id})})
    out = await model_planner(model_server, store).plan(INPUT.model_copy(update={"facts": facts}))

    assert 1 == len(model_server.requests)
    assert [] == _leaks(b"".join(model_server.raw).decode())
    assert [] == _leaks(out.model_dump_json())
    message = next(p for p in out.proposals if p.tool == "send_outreach")
    assert CHECK_IN_MESSAGE == message.arguments.message
    assert any("replaced by the approved template text" in r for r in message.review_reasons)


async def test_identifiers_in_a_field_with_no_approved_text_refuse_the_models_plan(
        store, model_server: ScriptedModelServer) -> None:
    """A task kind the rules never make, its queue naming the member: nothing approved can stand in, so the rules'
    plan goes to a human with the reason (values unquoted) and the model is not asked again."""
    from tests.agents.test_model_planner import INPUT, SMS, TASK, _due_token

    member = _member(store)
    odd = {**TASK, "kind": "outreach-follow-up", "queue": f"care-management/{FAMILY.lower()}"}
    model_server.script(lambda request: completion([("create_task", {**TASK, "due": _due_token(request)}),
                                                    ("create_task", {**odd, "due": _due_token(request)}),
                                                    ("send_outreach", SMS)]))
    facts = INPUT.facts.model_copy(update={"member": INPUT.facts.member.model_copy(
        update={"member_id": member.member_id})})
    out = await model_planner(model_server, store).plan(INPUT.model_copy(update={"facts": facts}))

    assert 1 == len(model_server.requests)
    assert out.planner == "model:scripted-model → offline-rules/1 (fallback)"
    assert [] == _leaks(out.model_dump_json()) and FAMILY.lower() not in out.model_dump_json()
    assert all("model text contained the member's name outside the free-text fields: the model's plan was not kept"
               in p.review_reasons for p in out.proposals)
