"""PAS pend notifications end to end: a provider system subscribes (``POST /fhir/Subscription``, R4 topic-based
backport, rest-hook) from a real HTTP receiver the test starts, a PAS request parks for an MD, the MD and a second
reviewer decide, and the receiver gets the notification Bundle naming the ClaimResponse; a receiver failing twice
gets it on the 3rd attempt with all three recorded; an http:// endpoint in production and an unreachable endpoint
are 422 OperationOutcomes with nothing stored."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.service import RPCError

from api import routes_fhir_pas
from cli.demo import api_server
from feeds.pas_notify import NotifyInput, NotifyResult, PasNotificationWorkflow
from feeds.pas_notify_activities import PAS_TOPIC, STATUS_PROFILE
from store.fhir_validation import validate_resource
from store.pas_subscriptions import SubscriptionStore
from store.submissions import SubmissionStore
from tests.deciding import decide
from tests.net import free_port
from tests.pas_factory import MRI_NOTES_AGAINST, make_pas_request
from tests.prior_auth_runs import decision, pending
from workflows.prior_auth import PriorAuthWorkflow

SUBMITTER = "cc.jones"
CONTENT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content"


class Receiver:
    """A real HTTP server on a loopback port: records every POSTed Bundle; answers 500 to the first ``fail``
    event notifications (handshakes are always answered 200)."""

    def __init__(self, fail: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail = fail
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.append(body)
                kind = _status_of(body)["type"]
                failing = kind == "event-notification" and receiver.fail > 0
                if failing:
                    receiver.fail -= 1
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"

    def events(self) -> list[dict[str, Any]]:
        return [b for b in self.received if _status_of(b)["type"] == "event-notification"]


def _focus(bundle: dict[str, Any]) -> str | None:
    """The ClaimResponse an event notification names."""
    event = _status_of(bundle).get("notification-event")
    parts = {p["name"]: p for p in (event or {}).get("part", [])}
    return (parts.get("focus") or {}).get("valueReference", {}).get("reference")


def _status_of(bundle: dict[str, Any]) -> dict[str, Any]:
    status = bundle["entry"][0]["resource"]
    return {p["name"]: p for p in status["parameter"]} | {
        "type": next(p["valueCode"] for p in status["parameter"] if p["name"] == "type")}


@contextlib.contextmanager
def receiving(fail: int = 0) -> Iterator[Receiver]:
    receiver = Receiver(fail)
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


@pytest.fixture
def http(worker_http: httpx.AsyncClient, approvers: dict[str, str]) -> httpx.AsyncClient:
    worker_http.headers["Authorization"] = f"Bearer {approvers[SUBMITTER]}"
    return worker_http


@pytest_asyncio.fixture
async def runs(client: Client, store) -> AsyncIterator[list[str]]:  # noqa: ANN001
    claims: list[str] = []
    yield claims
    for claim_id in claims:
        record = SubmissionStore(store.db).latest(claim_id)
        if record is not None and record.workflow_id:
            with contextlib.suppress(RPCError):
                await client.get_workflow_handle(record.workflow_id).terminate("test finished")


@pytest.fixture
def subscribed(store) -> Iterator[list[str]]:  # noqa: ANN001
    """Subscription ids a test created; turned off at the end so a later test's notifications go only to its own
    receiver (a notification run finishes its delivery to an off subscription without sending)."""
    ids: list[str] = []
    yield ids
    for subscription_id in ids:
        SubscriptionStore(store.db).set_status(subscription_id, "off")


def subscription(endpoint: str, content: str = "full-resource") -> dict[str, Any]:
    return {"resourceType": "Subscription", "status": "requested", "reason": "pend notifications",
            "criteria": PAS_TOPIC,
            "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
                        "_payload": {"extension": [{"url": CONTENT, "valueCode": content}]}}}


def _count(store) -> int:  # noqa: ANN001
    return store.db.read(lambda r: r.one("SELECT COUNT(*) FROM pas_subscriptions"))[0]


async def _subscribe(http: httpx.AsyncClient, receiver: Receiver, subscribed: list[str]) -> str:
    answer = await http.post("/fhir/Subscription", json=subscription(receiver.url))
    assert answer.status_code == 201, answer.text
    created = validate_resource(answer.json())
    assert ("active", PAS_TOPIC) == (created["status"], created["criteria"])
    assert ["handshake"] == [_status_of(b)["type"] for b in receiver.received]
    subscribed.append(created["id"])
    assert (await http.get(f"/fhir/Subscription/{created['id']}")).json()["id"] == created["id"]
    return created["id"]


async def _pend_and_decide(http: httpx.AsyncClient, client: Client, store, runs: list[str]) -> str:  # noqa: ANN001
    """Submit a request whose notes argue against the criteria: it parks for an MD; the MD and an RN decide.
    Returns the issued ClaimResponse reference."""
    request = make_pas_request(store, notes=MRI_NOTES_AGAINST)
    runs.append(request.claim_id)
    answer = await http.post("/fhir/Claim/$submit", json=request.bundle,
                             headers={"Content-Type": "application/fhir+json"})
    assert answer.status_code == 200, answer.text
    workflow_id = SubmissionStore(store.db).latest(request.claim_id).workflow_id
    handle = client.get_workflow_handle_for(PriorAuthWorkflow.run, workflow_id)
    await decide(client, workflow_id, decision(await pending(handle), approver="dr.rivera", role="md"))
    await decide(client, workflow_id, decision(await pending(handle, required_role="rn"), approver="rn.kim",
                                               role="rn"))
    result = await handle.result()
    return result.claim_response


async def _wait(predicate, timeout: float = 60.0) -> None:  # noqa: ANN001
    for _ in range(int(timeout / 0.2)):
        if predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError("timed out waiting")


async def test_a_subscribed_receiver_gets_the_decision_of_its_pended_request(
        http: httpx.AsyncClient, client: Client, store, runs, subscribed, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(routes_fhir_pas, "DECISION_WAIT_SECONDS", 0.5)
    with receiving() as receiver:
        subscription_id = await _subscribe(http, receiver, subscribed)
        claim_response = await _pend_and_decide(http, client, store, runs)
        # The subscriber is told of every request it submitted: another test's decision may arrive too.
        await _wait(lambda: any(_focus(e) == claim_response for e in receiver.events()))
        await client.get_workflow_handle(f"pas-notify-{claim_response.split('/')[1]}").result()

    [bundle] = [validate_resource(e) for e in receiver.events() if _focus(e) == claim_response]
    status = _status_of(bundle)
    event = {p["name"]: p for p in status["notification-event"]["part"]}
    assert ("history", [STATUS_PROFILE]) == (bundle["type"], bundle["entry"][0]["resource"]["meta"]["profile"])
    assert (f"Subscription/{subscription_id}", PAS_TOPIC) == (
        status["subscription"]["valueReference"]["reference"], status["topic"]["valueCanonical"])
    assert int(event["event-number"]["valueString"]) >= 1
    assert bundle["entry"][1]["resource"] == store.get(*claim_response.split("/"))  # full-resource: as issued
    assert [(1, "delivered", 200)] == [(d.attempt, d.outcome, d.http_status)
                                       for d in SubscriptionStore(store.db).deliveries(subscription_id)
                                       if d.claim_response == claim_response]


async def test_a_receiver_failing_twice_gets_the_notification_on_the_third_attempt(
        http: httpx.AsyncClient, client: Client, store, runs, subscribed, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(routes_fhir_pas, "DECISION_WAIT_SECONDS", 0.5)
    with receiving(fail=2) as receiver:
        subscription_id = await _subscribe(http, receiver, subscribed)
        claim_response = await _pend_and_decide(http, client, store, runs)
        result = await client.get_workflow_handle_for(
            PasNotificationWorkflow.run, f"pas-notify-{claim_response.split('/')[1]}").result()

    assert 3 == len([e for e in receiver.events() if _focus(e) == claim_response])
    assert [(1, "failed", 500), (2, "failed", 500), (3, "delivered", 200)] == [
        (d.attempt, d.outcome, d.http_status) for d in SubscriptionStore(store.db).deliveries(subscription_id)
        if d.claim_response == claim_response]
    assert [subscription_id] == result.delivered


def _decided_request(store, submitter: str) -> tuple[str, str, str]:  # noqa: ANN001
    """(claim id, ClaimResponse reference, workflow id) of a request ``submitter`` submitted, answered by a stored
    ClaimResponse: what the intake and the run leave in the records store."""
    from tools.pas_request import parse_pas_bundle, save_submission

    request = make_pas_request(store)
    workflow_id = f"prior-auth-notify-{uuid.uuid4().hex[:10]}"
    saved = save_submission(store, request.bundle, parse_pas_bundle(request.bundle), submitted_by=submitter,
                            workflow_id=workflow_id)
    claim_id = saved.submission.claim_id
    response_id = f"cr-{uuid.uuid4().hex[:10]}"
    store.put_many([{"resourceType": "ClaimResponse", "id": response_id, "status": "active",
                     "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type",
                                          "code": "professional"}]},
                     "use": "preauthorization", "patient": {"reference": f"Patient/{request.member_id}"},
                     "created": "2026-12-07T00:00:00Z", "insurer": {"display": "plan"}, "outcome": "complete",
                     "request": {"reference": f"Claim/{claim_id}"}}])
    return claim_id, f"ClaimResponse/{response_id}", workflow_id


async def test_a_run_started_through_temporal_cannot_send_another_submitters_decision(
        http: httpx.AsyncClient, client: Client, settings, store, subscribed) -> None:  # noqa: ANN001
    """Whoever can start workflows names someone else's ClaimResponse for their own subscription: nothing is sent;
    the refusal is recorded. Who is told comes from the records store, not the run's input."""
    with receiving() as receiver:
        subscription_id = await _subscribe(http, receiver, subscribed)
        handshakes = len(receiver.received)
        claim_id, claim_response, _ = _decided_request(store, "md.lee")  # another user's decided request
        _, _, own_run = _decided_request(store, SUBMITTER)  # ... named with a run of the caller's own request
        handle = await client.start_workflow(
            "PasNotificationWorkflow", {"claim_id": claim_id, "claim_response": claim_response,
                                        "workflow_id": own_run, "submitted_by": SUBMITTER, "max_attempts": 1},
            result_type=NotifyResult,
            id=f"pas-notify-forged-{subscription_id}", task_queue=settings.task_queue)
        result = await handle.result()
        # The delivery activity itself refuses a subscription that is not a submitter's, whatever the run found.
        from feeds.pas_notify_activities import PasNotifyActivities

        assert SUBMITTER not in PasNotifyActivities(store).recipients(claim_response)
        assert [] == PasNotifyActivities(store).recipients("ClaimResponse/no-such-response")
    assert handshakes == len(receiver.received)
    assert subscription_id not in result.delivered
    assert [] == [d for d in SubscriptionStore(store.db).deliveries(subscription_id) if d.outcome == "delivered"]


async def test_retries_exhausted_are_recorded_and_the_workflow_finishes(
        http: httpx.AsyncClient, client: Client, settings, store, subscribed) -> None:  # noqa: ANN001
    """A dead endpoint: each attempt recorded failed, then abandoned, and a person is given the call (a Task in
    the provider-relations queue, once); the run completes."""
    with receiving(fail=10) as receiver:
        subscription_id = await _subscribe(http, receiver, subscribed)
        # A decided request this caller submitted (stored as the intake and the run store them).
        claim_id, claim_response, workflow_id = _decided_request(store, SUBMITTER)
        handle = await client.start_workflow(
            PasNotificationWorkflow.run, NotifyInput(claim_id=claim_id, claim_response=claim_response,
                                                     workflow_id=workflow_id, max_attempts=2),
            id=f"pas-notify-test-{subscription_id}", task_queue=settings.task_queue)
        result = await handle.result()
    mine = [d for d in SubscriptionStore(store.db).deliveries(subscription_id)]
    assert [(1, "failed"), (2, "failed"), (0, "abandoned")] == [(d.attempt, d.outcome) for d in mine]
    assert subscription_id in result.abandoned
    member = store.get(*claim_response.split("/"))["patient"]["reference"].split("/")[1]
    told = [t for t in store.find_for_member("Task", member) if t["focus"]["reference"] == claim_response]
    assert [("notification-failed", "utilization-management/provider-relations")] == [
        (t["code"]["coding"][0]["code"], t["owner"]["display"]) for t in told]


async def test_an_http_endpoint_in_production_is_422_and_nothing_is_stored(
        settings, client: Client, store, approvers: dict[str, str]) -> None:  # noqa: ANN001
    production = settings.model_copy(update={"environment": "production", "api_port": free_port()})
    before = _count(store)
    with receiving() as receiver:
        async with api_server(production, client) as url, httpx.AsyncClient(base_url=url, headers={
                "Authorization": f"Bearer {approvers[SUBMITTER]}"}) as session:
            answer = await session.post("/fhir/Subscription", json=subscription(receiver.url))
    outcome = validate_resource(answer.json())
    assert (422, "OperationOutcome", "security") == (answer.status_code, outcome["resourceType"],
                                                      outcome["issue"][0]["code"])
    assert "https" in outcome["issue"][0]["diagnostics"]
    assert ([], before) == (receiver.received, _count(store))


async def test_an_unreachable_endpoint_or_a_wrong_topic_is_422_and_nothing_is_stored(
        http: httpx.AsyncClient, store) -> None:  # noqa: ANN001
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/notify"  # bound, not listening: connection refused
        before = _count(store)
        answer = await http.post("/fhir/Subscription", json=subscription(dead))
    outcome = validate_resource(answer.json())
    assert (422, "OperationOutcome") == (answer.status_code, outcome["resourceType"])
    assert "endpoint unreachable" in outcome["issue"][0]["diagnostics"]
    assert before == _count(store)

    wrong = {**subscription(dead), "criteria": "http://example.org/SubscriptionTopic/other"}
    answer = await http.post("/fhir/Subscription", json=wrong)
    assert (422, PAS_TOPIC in answer.json()["issue"][0]["diagnostics"]) == (answer.status_code, True)
    assert 400 == (await http.post("/fhir/Subscription", json={"resourceType": "Patient"})).status_code
    assert before == _count(store)


async def test_only_the_owner_reads_or_deletes_a_subscription(
        http: httpx.AsyncClient, api_url: str, approvers: dict[str, str], subscribed: list[str]) -> None:
    with receiving() as receiver:
        subscription_id = await _subscribe(http, receiver, subscribed)
    async with httpx.AsyncClient(base_url=api_url, headers={
            "Authorization": f"Bearer {approvers['rn.kim']}"}) as other:
        assert 404 == (await other.get(f"/fhir/Subscription/{subscription_id}")).status_code
        assert 404 == (await other.delete(f"/fhir/Subscription/{subscription_id}")).status_code
    assert 204 == (await http.delete(f"/fhir/Subscription/{subscription_id}")).status_code
    assert "off" == (await http.get(f"/fhir/Subscription/{subscription_id}")).json()["status"]


@pytest.mark.parametrize("endpoint", ["https://127.0.0.1:8443/hook", "https://10.0.0.7/hook", "https://[::1]/hook",
                                      "https://169.254.169.254/latest"])
def test_production_refuses_an_endpoint_inside_the_network(endpoint: str) -> None:
    """A subscriber may not make careloom POST into the plan's own network (loopback, private, link-local)."""
    from api.routes_subscriptions import SubscriptionRefused, refuse_internal_endpoint

    with pytest.raises(SubscriptionRefused, match="non-public address") as refused:
        refuse_internal_endpoint(endpoint)
    assert 422 == refused.value.status
