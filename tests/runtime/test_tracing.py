"""OpenTelemetry tracing (issue 25, Operations): off by default; on, one trace runs from the client's start through
the workflow and its activities to the model request, and the API's requests are spans named by route. Spans are
collected by the SDK's in-memory exporter; the workflow runs on the real dev server and worker, the model is the
scripted OpenAI-protocol server, the API a real uvicorn."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor

from runtime.settings import Settings
from runtime.temporal_client import connect
from runtime.tracing import configure_tracing, current_provider, shutdown_tracing, tracing_interceptor
from tests.conftest import OPEN_WINDOW
from tests.fhir_factory import make_member
from tests.model_server import completion, error, running_model_server
from tests.net import free_port


@pytest.fixture
def spans(settings: Settings) -> Iterator[InMemorySpanExporter]:
    """Tracing on for this test, into memory; off again after it."""
    exporter = InMemorySpanExporter()
    configure_tracing(settings.model_copy(update={"tracing_exporter": "console"}), exporter=exporter)
    yield exporter
    shutdown_tracing()


def traced(settings: Settings) -> Settings:
    return settings.model_copy(update={"tracing_exporter": "console"})


def _target(client: Client) -> str:
    return client.service_client.config.target_host


async def test_tracing_is_off_by_default(client: Client, settings: Settings) -> None:
    """Default settings: no provider, no interceptor on the client (so none on its workers)."""
    defaults = Settings(_env_file=None)
    assert "none" == defaults.tracing_exporter == settings.tracing_exporter
    assert configure_tracing(defaults) is None
    assert tracing_interceptor(defaults) is None
    plain = await connect(settings, target_host=_target(client))
    assert [] == list(plain.config()["interceptors"])


def test_an_explicit_exporter_builds_a_provider_that_names_the_service(settings: Settings) -> None:
    exporter = InMemorySpanExporter()
    provider = configure_tracing(settings.model_copy(update={"tracing_service_name": "careloom-test"}),
                                 exporter=exporter)
    try:
        assert provider is current_provider()
        assert "careloom-test" == provider.resource.attributes["service.name"]
        # Settings that turn tracing on reuse the process's provider (API, client and worker share one).
        assert provider is configure_tracing(traced(settings))
    finally:
        shutdown_tracing()
    assert current_provider() is None


async def test_one_trace_from_start_to_model_request(client: Client, settings: Settings, store,
                                                     spans: InMemorySpanExporter) -> None:
    """A run started on a traced client, run by a worker built from it, planning on the model: StartWorkflow,
    RunWorkflow, StartActivity, RunActivity and the model request are spans of one trace; the model span has the
    step and token counts and none of the prompt or the answer."""
    from agents.generated_text import StoreIdentifiers
    from agents.model_planner import ModelConfig, OpenAIPlanner
    from worker import build_worker
    from workflows.outreach_client import start_outreach

    on = traced(settings)
    traced_client = await connect(on, target_host=_target(client))
    assert [TracingInterceptor] == [type(i) for i in traced_client.config()["interceptors"]]

    member = make_member(store)
    queue = f"test-{uuid.uuid4().hex[:12]}"
    with running_model_server() as model_server:
        planner = OpenAIPlanner(ModelConfig(model="scripted-model", base_url=model_server.url, api_key="sk-test",
                                            timeout_seconds=5.0), identifiers=StoreIdentifiers(store))
        async with build_worker(traced_client, settings, store, task_queue=queue, planner=planner):
            handle, started = await start_outreach(
                traced_client, member_id=member.member_id, encounter_id=member.encounter_id, policy=OPEN_WINDOW,
                task_queue=queue, initiated_by="care-ops-bot", tool_attempts=1,
                salt=settings.pseudonym_salt.get_secret_value())
            assert started
            result = await handle.result()
        sent = [m["content"] for m in json.loads(model_server.raw[0])["messages"] if m.get("content")]
    assert ("completed", "model:scripted-model") == (result.status, result.planner)

    finished = spans.get_finished_spans()
    names = {s.name for s in finished}
    for name in ("StartWorkflow:MemberOutreachWorkflow", "RunWorkflow:MemberOutreachWorkflow",
                 "StartActivity:tools.lookup_member", "RunActivity:tools.lookup_member",
                 "StartActivity:agents.plan_outreach", "RunActivity:agents.plan_outreach",
                 "StartActivity:tools.send_outreach", "RunActivity:tools.send_outreach",
                 "CompleteWorkflow:MemberOutreachWorkflow", "model.chat"):
        assert name in names, f"no {name} span among {sorted(names)}"
    start = next(s for s in finished if s.name == "StartWorkflow:MemberOutreachWorkflow")
    trace_id = start.context.trace_id
    assert {trace_id} == {s.context.trace_id for s in finished}  # every span of the run, one trace

    [model] = [s for s in finished if s.name == "model.chat"]
    planning = next(s for s in finished if s.name == "RunActivity:agents.plan_outreach")
    assert planning.context.span_id == model.parent.span_id  # the request is the planner activity's child
    attributes = dict(model.attributes)
    assert ("planner", "scripted-model", "ok") == (attributes["careloom.model.step"],
                                                    attributes["gen_ai.request.model"],
                                                    attributes["careloom.model.status"])
    assert attributes["gen_ai.usage.input_tokens"] > 0 and attributes["gen_ai.usage.output_tokens"] > 0
    assert "careloom" == model.resource.attributes["service.name"]
    # Nothing of the prompt or the member in any span: only codes, counts and names.
    patient = next(r for r in member.resources if r["resourceType"] == "Patient")
    secrets = [member.member_id, member.encounter_id, patient["name"][0]["family"], patient["birthDate"]]
    values = " ".join(f"{k}={v}" for s in finished for k, v in (s.attributes or {}).items())
    values += " ".join(e.name for s in finished for e in s.events)
    for secret in secrets:
        assert secret not in values
    assert sent and not [text for text in sent if text[:60] in values]  # no prompt text either


async def test_a_failed_model_request_is_an_error_span_without_its_text(spans: InMemorySpanExporter) -> None:
    """A 401 ends the span in ERROR with the error type and HTTP status; the endpoint's message is not recorded."""
    from agents.model_client import ChatModel, ModelConfig, Tally

    with running_model_server() as model_server:
        model = ChatModel(ModelConfig(model="scripted-model", base_url=model_server.url, api_key="sk-test"),
                          step="recommender")
        model_server.script(completion([("issue_determination", {"outcome": "approve"})], prompt_tokens=100),
                            error(401, "bad key for Jane Canary"))
        await model.complete([{"role": "user", "content": "about Jane Canary"}], [], Tally())
        with pytest.raises(Exception):  # noqa: B017 - the ApplicationError the worker would raise
            await model.complete([{"role": "user", "content": "about Jane Canary"}], [], Tally())
    ok, failed = spans.get_finished_spans()
    assert (100, "recommender") == (ok.attributes["gen_ai.usage.input_tokens"], ok.attributes["careloom.model.step"])
    assert StatusCode.ERROR == failed.status.status_code
    assert (401, "ModelEndpointError") == (failed.attributes["http.response.status_code"],
                                          failed.attributes["careloom.model.status"])
    assert not failed.events  # no exception event: its text may quote the request
    for span in (ok, failed):
        assert "Canary" not in " ".join(str(v) for v in span.attributes.values())


async def test_api_requests_are_spans_named_by_route_without_ids(client: Client, settings: Settings,
                                                                 spans: InMemorySpanExporter) -> None:
    """A real uvicorn serving the app with tracing on: a span per request, named by its route template; the path's
    ids, the query string and the caller's address are not recorded. Off, the app has no instrumentation."""
    from api.app import create_app, instrument_requests
    from cli.demo import api_server

    served = traced(settings).model_copy(update={"api_port": free_port()})
    async with api_server(served, client) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        assert 200 == (await http.get("/api/health")).status_code
        refused = await http.get("/api/runs/outreach-pt-secret-7?member=pt-secret-7")
        assert 401 == refused.status_code
    finished = spans.get_finished_spans()
    by_name = {s.name: s for s in finished}
    assert "GET /api/health" in by_name, sorted(by_name)
    run = by_name["GET /api/runs/{workflow_id}"]
    assert 401 == run.attributes["http.status_code" if "http.status_code" in run.attributes
                                 else "http.response.status_code"]
    assert "/api/runs/{workflow_id}" == run.attributes.get("http.route")
    assert ("/api/runs/{workflow_id}", "") == (run.attributes.get("http.target"), run.attributes.get("net.peer.ip"))
    for span in finished:
        text = " ".join(f"{k}={v}" for k, v in span.attributes.items())
        assert "pt-secret" not in text, text

    assert not instrument_requests(create_app(settings, client=client), settings)  # tracing off: nothing added
