"""Whole outreach runs planned by the scripted model, on the real Temporal dev server and worker."""

from __future__ import annotations

from temporalio.client import Client

from agents.planner import PLAN_ACTIVITY
from history.audit import audit
from history.events import read_run
from tests.conftest import StartRun, wait_for_status
from tests.fhir_factory import make_member
from tests.model_server import ScriptedModelServer, completion, error
from workflows.outreach_models import OutreachResult


async def _planner_steps(client: Client, workflow_id: str) -> list:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return [call for call in read_run(history).calls if call.name == PLAN_ACTIVITY]


async def test_a_run_plans_on_the_model_and_completes(start_run: StartRun, store, client: Client,
                                                      model_server: ScriptedModelServer) -> None:
    member = make_member(store)
    handle = await start_run(member)
    result: OutreachResult = await handle.result()

    assert "completed" == result.status
    assert "model:scripted-model" == result.planner
    assert ["create_task", "send_outreach", "draft_care_plan"] == [a.tool for a in result.actions]
    task = store.get(*result.actions[0].reference.split("/"))
    assert member.member_id in task["description"]  # the model wrote [MEMBER_1]; the worker mapped it back
    assert member.member_id not in model_server.raw[0].decode()
    [step] = await _planner_steps(client, handle.id)
    out = step.result
    assert ("scripted-model", 1) == (out.model, out.usage.requests)
    assert out.prompt_version.startswith("outreach_planner@sha256:")
    assert out.usage.prompt_tokens > 0 and out.usage.completion_tokens > 0
    timeline = audit(read_run(await handle.fetch_history()))
    planning = next(e for e in timeline.entries if e.summary.startswith(PLAN_ACTIVITY))
    assert f"{out.usage.prompt_tokens}+{out.usage.completion_tokens} tokens" in planning.summary
    proposal = next(e for e in timeline.entries if e.kind == "proposal")
    assert (out.prompt_version, "scripted-model") == (proposal.details["prompt_version"], proposal.details["model"])


async def test_a_model_outage_parks_the_run_until_the_model_is_back(start_run: StartRun, store,
                                                                    model_server: ScriptedModelServer) -> None:
    model_server.script(error(503, "overloaded", **{"retry-after": "1"}), error(429, "slow down", **{"retry-after": "1"}))
    handle = await start_run(make_member(store))
    result: OutreachResult = await handle.result()

    assert "completed" == result.status
    assert 3 == len(model_server.requests)  # two refusals, each retried by Temporal, then the answer


async def test_a_refused_endpoint_falls_back_to_rules_and_a_human_decides(
    start_run: StartRun, store, client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.script(error(401, "invalid api key"))
    handle = await start_run(make_member(store))
    status = await wait_for_status(handle, lambda s: s.status == "awaiting_approval")

    assert "offline-rules/1 (fallback)" == status.planner
    assert 1 == len(model_server.requests)  # not retried
    assert status.pending_approvals
    for pending in status.pending_approvals:
        assert any("model endpoint refused the request" in r and "CARELOOM_MODEL_API_KEY" in r
                   for r in pending.reasons), pending.reasons
    history = await handle.fetch_history()
    failures = [c.failure for c in read_run(history).calls if c.name == PLAN_ACTIVITY and c.failure]
    assert ["model endpoint refused the request for scripted-model (401): check CARELOOM_MODEL_API_KEY"] == failures


async def test_an_answer_invalid_twice_waits_for_a_human(start_run: StartRun, store,
                                                         model_server: ScriptedModelServer) -> None:
    bad = completion([("send_outreach", {"channel": "sms", "template": "buy-now", "message": "hi there",
                                         "rationale": "x"})])
    model_server.script(bad, bad)
    handle = await start_run(make_member(store))
    status = await wait_for_status(handle, lambda s: s.status == "awaiting_approval")

    assert status.planner.startswith("model:scripted-model → offline-rules/1")
    assert status.pending_approvals
    assert all(any("answer unusable after one repair" in r for r in p.reasons) for p in status.pending_approvals)


async def test_a_model_down_past_the_planning_budget_hands_the_run_to_a_human(
    store, client: Client, task_queue: str, settings, model_server: ScriptedModelServer
) -> None:
    from datetime import timedelta

    from tests.conftest import OPEN_WINDOW
    from workflows.outreach_client import start_outreach

    model_server.script(*[error(503, "down", **{"retry-after": "1"}) for _ in range(30)])
    member = make_member(store)
    handle, _ = await start_outreach(client, member_id=member.member_id, encounter_id=member.encounter_id,
                                     policy=OPEN_WINDOW, task_queue=task_queue, tool_attempts=1,
                                     salt=settings.pseudonym_salt.get_secret_value(),
                                     planning_budget=timedelta(seconds=4))
    try:
        status = await wait_for_status(handle, lambda s: s.status == "awaiting_approval", timeout=30)
    finally:
        await handle.terminate("test finished")
    assert "offline-rules/1 (fallback)" == status.planner
    assert all(any("no plan from the model within the planning budget (0:00:04)" in r and "503" in r
                   for r in p.reasons) for p in status.pending_approvals), status.pending_approvals
    assert 2 <= len(model_server.requests) <= 6
