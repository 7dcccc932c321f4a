"""The worker's /metrics: careloom's counters and the Temporal SDK's telemetry at one scrape target, over real
HTTP, after real runs on the dev server; model counters from the real client talking to the scripted server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import urllib.request
import uuid

from temporalio.client import Client
from temporalio.service import RPCError

from feeds.discharges import discharge_of, start_discharges
from guardrails.configured import outreach_policy
from runtime.metrics import REGISTRY
from runtime.temporal_client import connect
from tests.conftest import wait_for_status
from tests.fhir_factory import make_member
from worker import build_worker, serve_worker_metrics
from workflows.outreach import MemberOutreachWorkflow
from workflows.run_gauges import RunGauges


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_the_worker_endpoint_serves_careloom_and_sdk_metrics(client: Client, settings, store) -> None:
    queue = f"test-metrics-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    ours = settings.model_copy(update={"task_queue": queue, "worker_metrics_port": port})
    metrics = serve_worker_metrics(ours)  # what `python worker.py` serves
    assert metrics is not None and serve_worker_metrics(settings) is None  # no port, nothing served
    metered = await connect(ours, target_host=client.service_client.config.target_host, runtime=metrics.runtime)
    member = make_member(store)
    found = discharge_of(store.get("Encounter", member.encounter_id), outreach_policy(ours), ours.plan_time_zone)
    before = REGISTRY.get_sample_value("careloom_runs_started_total",
                                       {"program": "post-discharge-outreach", "trigger": "cli"}) or 0
    try:
        async with build_worker(metered, ours, store, task_queue=queue):
            report = await start_discharges(metered, ours, [found], trigger="cli")
            await wait_for_status(metered.get_workflow_handle(report.started[0]),
                                  lambda s: s.status not in ("starting", "gathering", "planning", "executing"),
                                  timeout=60, query=MemberOutreachWorkflow.status)
            await RunGauges(metered, ours, store.db).refresh()
            with contextlib.suppress(RPCError):  # it may have completed on its own
                await metered.get_workflow_handle(report.started[0]).terminate("test finished")
        answer = await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{port}/metrics", timeout=5)
        content_type, text = answer.headers["content-type"], answer.read().decode()
    finally:
        metrics.server.shutdown()
    assert content_type.startswith("text/plain; version=")
    assert f'careloom_runs_started_total{{program="post-discharge-outreach",trigger="cli"}} {before + 1}' in text
    assert "careloom_runs{" in text and "careloom_pending_approval_runs_by_role{" in text
    assert "temporal_workflow_completed" in text or "temporal_request" in text, text[-2000:]
    assert "temporal_activity_execution_latency" in text or "temporal_activity_" in text


async def test_model_requests_and_tokens_are_counted() -> None:
    from agents.model_client import ChatModel, ModelConfig, Tally
    from tests.model_server import completion, error, running_model_server

    with running_model_server() as model_server:
        await _two_requests(model_server, ChatModel, ModelConfig, Tally, completion, error)


async def _two_requests(model_server, ChatModel, ModelConfig, Tally, completion, error) -> None:  # noqa: ANN001, N803
    model = ChatModel(ModelConfig(model="scripted-model", base_url=model_server.url, api_key="sk-test"),
                      step="recommender")
    model_server.script(completion([("issue_determination", {"outcome": "approve"})], prompt_tokens=100),
                        error(401, "bad key"))
    requests = REGISTRY.get_sample_value("careloom_model_requests_total", {"step": "recommender"}) or 0
    prompt = REGISTRY.get_sample_value("careloom_model_tokens_total", {"step": "recommender", "kind": "prompt"}) or 0
    await model.complete([{"role": "user", "content": "x"}], [], Tally())
    try:
        await model.complete([{"role": "user", "content": "x"}], [], Tally())
    except Exception:  # noqa: BLE001 - the 401 is what is being counted
        pass
    assert requests + 2 == REGISTRY.get_sample_value("careloom_model_requests_total", {"step": "recommender"})
    assert prompt + 100 == REGISTRY.get_sample_value("careloom_model_tokens_total",
                                                     {"step": "recommender", "kind": "prompt"})
    assert 1 <= REGISTRY.get_sample_value("careloom_model_errors_total",
                                          {"step": "recommender", "error": "ModelEndpointError"})


async def test_one_process_per_deployment_asks_visibility_and_approvals_come_from_the_projection(
        client: Client, settings, store, tmp_path) -> None:  # noqa: ANN001
    """Two worker processes on one records database: only the lease holder counts runs from visibility; both
    serve the same counts. The approval gauges are the projection's rows (runs per queue and role, overdue runs),
    with no Temporal call at all."""
    from datetime import UTC, datetime, timedelta

    from guardrails.policy import GuardrailPolicy
    from store.approval_items import ItemChange, apply_change
    from tests.databases import fresh_store
    from tests.guardrails.run_facts import task
    from tests.workflows.approval_items import pending_item
    from workflows.approval_projection import item_row

    with fresh_store(tmp_path) as own:
        now = datetime.now(UTC)
        late = pending_item(task(confidence=0.5), role="care_coordinator", policy=GuardrailPolicy(),
                            now=now - timedelta(days=3))
        fresh = late.model_copy(update={"workflow_id": "outreach-mbr-2-ep2", "sla_deadline": now + timedelta(days=1)})
        for item in (late, fresh):
            own.db.write(lambda db, i=item: apply_change(db, ItemChange(workflow_id=i.workflow_id, upserts=[
                item_row(i, run_id="r1", program="MemberOutreachWorkflow")]), now))
        first, second = (RunGauges(client, settings, own.db, holder=h) for h in ("worker-a", "worker-b"))
        await first.refresh()
        await second.refresh()
        assert first.visibility_calls > 0 and 0 == second.visibility_calls
        await second.refresh()
        assert 0 == second.visibility_calls  # the lease is still worker-a's
        assert 2 == REGISTRY.get_sample_value("careloom_pending_approval_runs_by_queue", {"queue": late.queue})
        assert 2 == REGISTRY.get_sample_value("careloom_pending_approval_runs_by_role", {"role": "care_coordinator"})
        assert 1 == REGISTRY.get_sample_value("careloom_sla_overdue_runs", {"program": "post-discharge-outreach"})
        assert REGISTRY.get_sample_value("careloom_runs", {"program": "post-discharge-outreach",
                                                           "status": "completed"}) is not None
