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
from workflows.run_gauges import VisibilityGauges


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
            await VisibilityGauges(metered, ours).refresh()
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
