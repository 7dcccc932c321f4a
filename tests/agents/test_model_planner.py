"""The OpenAI-compatible planner against a real local HTTP server speaking the chat-completions protocol.

The real ``openai`` client runs (SDK retries off); the server plays scripted answers and records requests.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.exceptions import ApplicationError

from agents.model_planner import CERTAINTY_WITHOUT_LOGPROBS
from agents.offline_planner import CHECK_IN_MESSAGE
from agents.planner import MODEL_ENDPOINT_ERROR, PlannerInput
from agents.prompts import outreach_prompts
from guardrails.outreach_rules import evaluate_action
from guardrails.policy import GuardrailPolicy
from tests.agents.conftest import model_planner
from tests.guardrails.run_facts import make_facts, scored_risk
from tests.model_server import Reply, ScriptedModelServer, completion, error
from tests.net import free_port

DUE = datetime(2024, 6, 12, 21, 0, tzinfo=UTC)
FACTS = make_facts(risk=scored_risk(los=2)).model_copy(update={"tcm_contact_due": DUE})
INPUT = PlannerInput(workflow_id="outreach-mbr-000000000001-0123456789", facts=FACTS, high_risk_lace=10)
TASK = {"kind": "tcm-interactive-contact", "queue": "care-management/post-discharge", "priority": "routine",
        "description": "Call the member within 2 business days", "reason": "inpatient discharge",
        "due": "[DATE_1]", "rationale": "TCM contact is due after discharge."}
SMS = {"channel": "sms", "template": "post-discharge-check-in", "message": CHECK_IN_MESSAGE,
       "rationale": "Preferred channel sms."}


def _due_token(request: dict) -> str:
    """The token the server was given for the TCM deadline."""
    user = request["messages"][1]["content"]
    return json.loads(user[user.index("{"):user.rindex("}") + 1])["tcm_contact_due"]


async def test_tool_calls_become_typed_proposals_with_model_prompt_and_usage(model_server: ScriptedModelServer):
    model_server.script(lambda request: completion([("create_task", {**TASK, "due": _due_token(request)}),
                                                    ("send_outreach", SMS)], prompt_tokens=1200))
    out = await model_planner(model_server).plan(INPUT)

    assert ["create_task", "send_outreach"] == [p.tool for p in out.proposals]
    assert ["a1-create-task", "a2-send-outreach"] == [p.action_id for p in out.proposals]
    assert DUE == out.proposals[0].arguments.due  # the date token was mapped back
    assert ("model:scripted-model", "scripted-model") == (out.planner, out.model)
    assert out.prompt_version == outreach_prompts().version and "@sha256:" in out.prompt_version
    assert (1, 1200, False) == (out.usage.requests, out.usage.prompt_tokens, out.usage.repaired)
    assert out.usage.completion_tokens > 0
    expected_cost = (1200 * 2.5 + out.usage.completion_tokens * 10.0) / 1_000_000
    assert out.usage.estimated_cost_usd == pytest.approx(expected_cost)
    [request] = model_server.requests
    assert {"create_task", "send_outreach", "draft_care_plan"} == {t["function"]["name"] for t in request["tools"]}
    assert request["logprobs"] is True
    assert "Bearer sk-test-not-a-real-key" == model_server.headers[0]["authorization"]
    assert out.proposals[0].confidence == pytest.approx(CERTAINTY_WITHOUT_LOGPROBS)


async def test_tool_schemas_come_from_the_tools_own_models(model_server: ScriptedModelServer):
    from tools.tasks import CreateTaskArgs

    await model_planner(model_server).plan(INPUT)
    schema = next(t["function"]["parameters"] for t in model_server.requests[0]["tools"]
                  if t["function"]["name"] == "create_task")
    fields = set(CreateTaskArgs.model_fields) - {"tool"}
    assert fields | {"rationale"} == set(schema["properties"])
    assert set(CreateTaskArgs.model_json_schema()["properties"]["priority"]["enum"]) == set(
        schema["properties"]["priority"]["enum"])


async def test_identifiers_and_dates_never_reach_the_model_under_safe_harbor(model_server: ScriptedModelServer):
    await model_planner(model_server).plan(INPUT)
    sent = model_server.raw[0].decode()
    for value in ("pt-guard-1", "enc-guard-1", "mbr-000000000001", "2024-06-", INPUT.workflow_id):
        assert value not in sent
    assert "[MEMBER_1]" in sent and "[DATE_" in sent


async def test_limited_data_set_endpoint_sees_dates_but_no_identifiers(model_server: ScriptedModelServer):
    await model_planner(model_server, phi="limited-data-set").plan(INPUT)
    sent = model_server.raw[0].decode()
    assert "2024-06-10" in sent
    for value in ("pt-guard-1", "enc-guard-1", "mbr-000000000001"):
        assert value not in sent


async def test_disallowed_tool_gets_one_repair_round_trip(model_server: ScriptedModelServer):
    model_server.script(completion([("create_task", TASK), ("delete_member", {"rationale": "cleanup"})]),
                        completion([("create_task", TASK)]))
    out = await model_planner(model_server).plan(INPUT)

    assert ["create_task"] == [p.tool for p in out.proposals]
    assert (2, True) == (out.usage.requests, out.usage.repaired)
    repair = model_server.requests[1]["messages"]
    tool_answers = {m["tool_call_id"]: m["content"] for m in repair if m["role"] == "tool"}
    assert tool_answers["call_1"].startswith("valid, but nothing was executed: include this call again")
    assert "this tool is not available to this agent; use one of create_task" in tool_answers["call_2"]
    assert "Answer again with the complete plan" in repair[-1]["content"]
    # A repaired plan is never executed on its own: the guardrails send it to a human with the reason, which names
    # the tool the model invented no more than its call id (model-written text a reviewer would read).
    assert "first answer was refused (an unknown tool: this tool is not available" in out.proposals[0].review_reasons[0]
    assert "delete_member" not in out.model_dump_json() and "call_2" not in out.model_dump_json()
    assert "require_approval" == evaluate_action(out.proposals[0], FACTS, GuardrailPolicy(min_confidence=0.0),
                                                 now=None).decision


async def test_invalid_arguments_then_a_repaired_answer(model_server: ScriptedModelServer):
    model_server.script(completion([("create_task", TASK), ("send_outreach", {**SMS, "channel": "pigeon"})]),
                        completion([("create_task", TASK), ("send_outreach", SMS)]))
    out = await model_planner(model_server).plan(INPUT)
    assert "sms" == out.proposals[1].arguments.channel
    answers = [m["content"] for m in model_server.requests[1]["messages"] if m["role"] == "tool"]
    assert answers[0].startswith("valid, but nothing was executed")
    assert "invalid arguments: channel" in answers[1]


async def test_invalid_twice_goes_to_a_human_with_the_reason(model_server: ScriptedModelServer):
    bad = completion([("send_outreach", {**SMS, "template": "buy-now"})])
    model_server.script(bad, bad)
    out = await model_planner(model_server).plan(INPUT)

    assert 2 == len(model_server.requests) and out.usage.repaired
    assert out.planner.startswith("model:scripted-model → offline-rules/1")
    assert out.proposals and all(p.review_reasons for p in out.proposals)
    assert "answer unusable after one repair" in out.proposals[0].review_reasons[0]
    verdict = evaluate_action(out.proposals[0], FACTS, GuardrailPolicy(), now=None)
    assert "require_approval" == verdict.decision
    assert any(r.startswith("planner asks for review") for r in verdict.reasons)


async def test_malformed_json_arguments_are_repaired(model_server: ScriptedModelServer):
    model_server.script(completion([("create_task", '{"kind": "tcm-interactive-contact", ')]),
                        completion([("create_task", TASK)]))
    out = await model_planner(model_server).plan(INPUT)
    assert ["create_task"] == [p.tool for p in out.proposals]
    refused = next(m["content"] for m in model_server.requests[1]["messages"] if m["role"] == "tool")
    assert "not valid JSON" in refused


async def test_answer_without_tool_calls_is_repaired(model_server: ScriptedModelServer):
    model_server.script(completion([], content="I think the member should be called."),
                        completion([("create_task", TASK)]))
    out = await model_planner(model_server).plan(INPUT)
    assert 1 == len(out.proposals)
    assert "no tool calls" in model_server.requests[1]["messages"][-1]["content"]


async def test_429_is_retryable_after_the_servers_retry_after(model_server: ScriptedModelServer):
    model_server.script(error(429, "rate limited", **{"retry-after": "7"}))
    with pytest.raises(ApplicationError) as raised:
        await model_planner(model_server).plan(INPUT)
    assert ("ModelRateLimited", False) == (raised.value.type, raised.value.non_retryable)
    assert timedelta(seconds=7) == raised.value.next_retry_delay
    assert 1 == len(model_server.requests)  # the SDK did not retry on its own


async def test_500_is_retryable_and_not_retried_by_the_sdk(model_server: ScriptedModelServer):
    model_server.script(error(500, "boom"))
    with pytest.raises(ApplicationError) as raised:
        await model_planner(model_server).plan(INPUT)
    assert ("ModelUnavailable", False, None) == (raised.value.type, raised.value.non_retryable,
                                                 raised.value.next_retry_delay)
    assert 1 == len(model_server.requests)


async def test_slow_answer_past_the_timeout_is_a_retryable_timeout(model_server: ScriptedModelServer):
    model_server.script(Reply(delay=2.0, body=completion([("create_task", TASK)]).body))
    with pytest.raises(ApplicationError) as raised:
        await model_planner(model_server, timeout_seconds=0.5).plan(INPUT)
    assert ("ModelTimeout", False) == (raised.value.type, raised.value.non_retryable)


@pytest.mark.parametrize(("status", "hint"), [
    (400, "supports tool calling"), (401, "CARELOOM_MODEL_API_KEY"), (404, "CARELOOM_MODEL_BASE_URL")])
async def test_client_errors_are_not_retryable_and_name_the_fix(model_server: ScriptedModelServer, status, hint):
    model_server.script(error(status, "nope"))
    with pytest.raises(ApplicationError) as raised:
        await model_planner(model_server).plan(INPUT)
    assert (MODEL_ENDPOINT_ERROR, True) == (raised.value.type, raised.value.non_retryable)
    assert f"({status})" in raised.value.message and hint in raised.value.message
    assert 1 == len(model_server.requests)


async def test_confidence_comes_from_the_log_probabilities_of_each_call(model_server: ScriptedModelServer):
    task_text = json.dumps({**TASK, "due": "[DATE_1]"})
    sms_text = json.dumps(SMS)
    pieces = [("<preamble>", -4.0)]
    pieces += [(task_text[i:i + 9], -0.1) for i in range(0, len(task_text), 9)]
    pieces += [(sms_text[i:i + 9], -0.6) for i in range(0, len(sms_text), 9)]
    model_server.script(completion([("create_task", {**TASK, "due": "[DATE_1]"}), ("send_outreach", SMS)],
                                   logprobs=pieces))
    out = await model_planner(model_server).plan(INPUT)
    task, sms = out.proposals
    # Full evidence (LACE scored, channel and zone known, eligibility complete): confidence = certainty.
    assert task.confidence == pytest.approx(math.exp(-0.1), abs=1e-4)
    assert sms.confidence == pytest.approx(math.exp(-0.6), abs=1e-4)
    assert "value tokens of this call" in task.signals[-1].note
    assert sms.confidence < GuardrailPolicy().min_confidence <= task.confidence


async def test_log_probabilities_of_unrelated_text_are_not_used(model_server: ScriptedModelServer):
    model_server.script(completion([("create_task", TASK)], logprobs=[("x", -0.2), ("y", -0.4)]))
    out = await model_planner(model_server).plan(INPUT)
    assert out.proposals[0].confidence == pytest.approx(CERTAINTY_WITHOUT_LOGPROBS)
    assert "do not cover this call's text" in out.proposals[0].signals[-1].note


async def test_unreachable_endpoint_is_retryable(model_server: ScriptedModelServer):
    planner = model_planner(model_server, base_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(ApplicationError) as raised:
        await planner.plan(INPUT)
    assert ("ModelUnavailable", False) == (raised.value.type, raised.value.non_retryable)


async def test_a_repair_that_drops_the_tcm_task_goes_to_a_human(model_server: ScriptedModelServer):
    """Plan-level rule: the repaired answer resends only the fixed message, so the TCM task is missing."""
    model_server.script(completion([("create_task", TASK), ("send_outreach", {**SMS, "channel": "text"})]),
                        completion([("send_outreach", SMS)]))
    out = await model_planner(model_server).plan(INPUT)
    assert out.planner.endswith("offline-rules/1 (fallback)")
    assert any(p.arguments.tool == "create_task" for p in out.proposals)  # the rules' plan keeps the TCM task
    assert "exactly one create_task of kind tcm-interactive-contact, not 0" in out.proposals[0].review_reasons[0]


async def test_plan_level_rules_are_repaired(model_server: ScriptedModelServer):
    late = {**TASK, "due": "2099-01-01T00:00:00Z"}
    model_server.script(completion([("create_task", late), ("send_outreach", SMS), ("send_outreach", SMS)]),
                        completion([("create_task", TASK), ("send_outreach", SMS)]))
    out = await model_planner(model_server).plan(INPUT)
    assert ["create_task", "send_outreach"] == [p.tool for p in out.proposals]
    repair = model_server.requests[1]["messages"][-1]["content"]
    assert "at most one message" in repair


async def test_model_written_message_text_goes_to_review(model_server: ScriptedModelServer):
    model_server.script(completion([("create_task", TASK), ("send_outreach", {**SMS, "message": "Hi! How are you?"})]))
    out = await model_planner(model_server).plan(INPUT)
    task, sms = out.proposals
    assert [] == task.review_reasons
    assert ["the message text was written by the model, not the approved template text"] == sms.review_reasons


async def test_a_token_in_a_member_message_is_refused(model_server: ScriptedModelServer):
    model_server.script(completion([("create_task", TASK), ("send_outreach", {**SMS, "message": "Hello [MEMBER_1]"})]),
                        completion([("create_task", TASK), ("send_outreach", SMS)]))
    out = await model_planner(model_server).plan(INPUT)
    assert CHECK_IN_MESSAGE == out.proposals[1].arguments.message
    refused = [m["content"] for m in model_server.requests[1]["messages"] if m["role"] == "tool"]
    assert any("carries no identifiers" in r for r in refused)


@pytest.mark.parametrize("body", ["<html><body>Welcome to nginx</body></html>", '{"choices": [', '"just a string"'])
async def test_a_200_that_is_not_a_chat_completion_is_a_clear_non_retryable_error(
        model_server: ScriptedModelServer, body: str):
    model_server.script(Reply(200, body))
    with pytest.raises(ApplicationError) as raised:
        await model_planner(model_server).plan(INPUT)
    assert (MODEL_ENDPOINT_ERROR, True) == (raised.value.type, raised.value.non_retryable)
    assert "CARELOOM_MODEL_BASE_URL" in raised.value.message


async def test_odd_but_valid_answers_do_not_crash(model_server: ScriptedModelServer):
    """Arguments sent as an object, missing call ids, a null and a positive logprob."""
    reply = completion([("create_task", TASK), ("send_outreach", SMS)], logprobs=[("a", 0.3), ("b", -0.2)])
    for call in reply.body["choices"][0]["message"]["tool_calls"]:
        call["function"]["arguments"] = json.loads(call["function"]["arguments"])
        call["id"] = ""
    reply.body["choices"][0]["logprobs"]["content"].append({"token": "c", "logprob": None, "top_logprobs": []})
    model_server.script(reply)
    out = await model_planner(model_server).plan(INPUT)
    assert ["create_task", "send_outreach"] == [p.tool for p in out.proposals]
    assert all(0.0 <= p.confidence <= 1.0 for p in out.proposals)


async def test_a_non_function_tool_call_gets_a_well_formed_repair(model_server: ScriptedModelServer):
    reply = completion([("create_task", TASK)])
    reply.body["choices"][0]["message"]["tool_calls"].append({"id": "call_x", "type": "custom",
                                                              "custom": {"name": "shell", "input": "rm -rf /"}})
    model_server.script(reply, completion([("create_task", TASK)]))
    out = await model_planner(model_server).plan(INPUT)
    assert ["create_task"] == [p.tool for p in out.proposals]
    assert "only function tool calls are allowed" in model_server.requests[1]["messages"][-1]["content"]


async def test_no_tool_calls_repair_keeps_roles_alternating(model_server: ScriptedModelServer):
    model_server.script(completion([], content="Let me think."), completion([("create_task", TASK)]))
    await model_planner(model_server).plan(INPUT)
    roles = [m["role"] for m in model_server.requests[1]["messages"]]
    assert ["system", "user", "assistant", "user"] == roles


async def test_insufficient_quota_is_not_retried(model_server: ScriptedModelServer):
    model_server.script(Reply(429, {"error": {"message": "quota", "type": "insufficient_quota",
                                              "code": "insufficient_quota"}}))
    with pytest.raises(ApplicationError) as raised:
        await model_planner(model_server).plan(INPUT)
    assert (MODEL_ENDPOINT_ERROR, True) == (raised.value.type, raised.value.non_retryable)
    assert "out of quota" in raised.value.message


@pytest.mark.parametrize(("headers", "delay"), [
    ({"retry-after": "soon"}, None), ({"retry-after-ms": "-5000"}, timedelta(0)),
    ({"retry-after": "1e400"}, None), ({"retry-after": "Wed, 21 Oct 2015 07:28:00 -0000"}, timedelta(0)),
    ({"retry-after": "99999"}, timedelta(minutes=10))])
async def test_odd_retry_after_values_never_crash(model_server: ScriptedModelServer, headers, delay):
    model_server.script(error(503, "busy", **headers))
    with pytest.raises(ApplicationError) as raised:
        await model_planner(model_server).plan(INPUT)
    assert ("ModelUnavailable", delay) == (raised.value.type, raised.value.next_retry_delay)
