"""The PAS pend notification's activities, and the notification Bundles (R4 topic-based Subscriptions backport).

A notification is a ``history`` Bundle whose first entry is the SubscriptionStatus (in R4 a ``Parameters`` with
the backport's subscription-status-r4 profile: subscription, topic, status, type, events-since-subscription-start
and, for an event, one notification-event naming the event number and its focus, the ClaimResponse). With
``full-resource`` content the ClaimResponse as issued follows, read from the records store; with ``id-only`` only
its reference is in the status; ``empty`` names neither. The handshake sent when a subscription is created is the
same Bundle with type ``handshake`` and no event. Each attempt is recorded in ``pas_notifications`` with the HTTP
status or the error class (never a body: the endpoint's answer may echo clinical data).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from feeds.pas_notify import (
    ABANDON_DELIVERY,
    DELIVER_NOTIFICATION,
    FIND_SUBSCRIPTIONS,
    DeliveryInput,
    NotifyInput,
    SubscriptionRef,
)
from store.pas_subscriptions import Delivery, SubscriptionRow, SubscriptionStore
from store.records import member_of
from store.sql_records import SqlCareRecordStore
from store.submissions import SubmissionStore
from tools.tasks import CreateTaskArgs, CreateTaskInput, create_task

__all__ = ["BACKPORT", "PAS_TOPIC", "STATUS_PROFILE", "PasNotifyActivities", "notification_bundle", "post_bundle"]

PAS_TOPIC = "http://hl7.org/fhir/us/davinci-pas/SubscriptionTopic/PASSubscriptionTopic"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
STATUS_PROFILE = f"{BACKPORT}/backport-subscription-status-r4"
FHIR_JSON = "application/fhir+json"
POST_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
NOTIFY_FAILED_QUEUE = "utilization-management/provider-relations"
"""Where a person picks up a decision no subscribed endpoint would take."""


def notification_bundle(subscription: SubscriptionRow, *, kind: str, events_since_start: int,
                        event_number: int | None = None, focus: str | None = None,
                        resource: dict[str, Any] | None = None) -> dict[str, Any]:
    """A backport notification Bundle (type ``history``), the SubscriptionStatus Parameters first."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    parameters: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"Subscription/{subscription.id}"}},
        {"name": "topic", "valueCanonical": subscription.topic},
        {"name": "status", "valueCode": "active"},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(events_since_start)},
    ]
    if event_number is not None:
        part: list[dict[str, Any]] = [{"name": "event-number", "valueString": str(event_number)},
                                      {"name": "timestamp", "valueInstant": now}]
        if focus and subscription.content != "empty":
            part.append({"name": "focus", "valueReference": {"reference": focus}})
        parameters.append({"name": "notification-event", "part": part})
    status = {"resourceType": "Parameters", "id": str(uuid.uuid4()), "meta": {"profile": [STATUS_PROFILE]},
              "parameter": parameters}
    entries: list[dict[str, Any]] = [{"fullUrl": f"urn:uuid:{status['id']}", "resource": status,
                                      "request": {"method": "GET", "url": f"Subscription/{subscription.id}/$status"},
                                      "response": {"status": "200"}}]
    if resource is not None and subscription.content == "full-resource":
        entries.append({"fullUrl": focus, "resource": resource,
                        "request": {"method": "PUT", "url": focus}, "response": {"status": "200"}})
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "history", "timestamp": now,
            "entry": entries}


async def post_bundle(endpoint: str, bundle: dict[str, Any],
                      headers: dict[str, str] | None = None) -> tuple[int | None, str | None]:
    """POST a notification; (HTTP status, None) when answered, (None, error class) when not reached."""
    try:
        async with httpx.AsyncClient(timeout=POST_TIMEOUT, follow_redirects=False) as session:
            answer = await session.post(endpoint, json=bundle, headers={"Content-Type": FHIR_JSON, **(headers or {})})
    except httpx.HTTPError as err:
        return None, type(err).__name__
    return answer.status_code, None


class PasNotifyActivities:
    """Bound to the records store (subscriptions, submissions and the issued ClaimResponses)."""

    def __init__(self, store: SqlCareRecordStore) -> None:
        self._store = store
        self._subscriptions = SubscriptionStore(store.db)

    def activities(self) -> list[object]:
        return [self.find_subscriptions, self.deliver, self.abandon]

    def recipients(self, claim_response: str) -> list[str]:
        """The users who submitted the request this ClaimResponse answers, from the records store: the stored
        ClaimResponse names its Claim, the stored submission of that Claim its run and member (which must be the
        ClaimResponse's) and its submitters. None for anything else."""
        kind, _, rid = claim_response.partition("/")
        response = self._store.get("ClaimResponse", rid) if kind == "ClaimResponse" else None
        claim = ((response or {}).get("request") or {}).get("reference", "")
        submissions = SubmissionStore(self._store.db)
        record = submissions.latest(claim.partition("/")[2]) if claim.startswith("Claim/") else None
        if response is None or record is None or record.workflow_id is None or member_of(response) != record.member_id:
            return []
        return submissions.submitters(record.workflow_id)

    @activity.defn(name=FIND_SUBSCRIPTIONS)
    def find_subscriptions(self, data: NotifyInput) -> list[SubscriptionRef]:
        """The active PAS-topic subscriptions of everyone who submitted the request the ClaimResponse answers, with
        their event numbers (who is told comes from the records store, never from the run's input)."""
        owners = self.recipients(data.claim_response)
        return [SubscriptionRef(subscription_id=row.id,
                                event_number=self._subscriptions.next_event_number(row.id, data.claim_response))
                for row in self._subscriptions.active_of(owners, PAS_TOPIC)]

    @activity.defn(name=DELIVER_NOTIFICATION)
    async def deliver(self, data: DeliveryInput) -> int:
        """POST the notification once; every attempt recorded. A non-2xx or unreachable endpoint raises (retried)."""
        attempt = activity.info().attempt
        row = await asyncio.to_thread(self._subscriptions.get, data.subscription_id)
        if row is None or row.status != "active":
            return 0  # deleted since: nothing to send
        if row.owner not in await asyncio.to_thread(self.recipients, data.claim_response):
            # A run started through Temporal may name any subscription: only a submitter of the request is told.
            activity.logger.warning("notification refused: the subscriber did not submit this request",
                                    extra={"subscription_id": row.id})
            await asyncio.to_thread(self._subscriptions.record, Delivery(
                subscription_id=row.id, claim_response=data.claim_response, event_number=data.event_number,
                attempt=attempt, outcome="abandoned", http_status=None,
                error="refused: the subscriber did not submit the request this ClaimResponse answers",
                at=datetime.now(UTC)))
            return 0
        resource = None
        if row.content == "full-resource":
            kind, _, rid = data.claim_response.partition("/")
            resource = await asyncio.to_thread(self._store.get, kind, rid)
        delivered = await asyncio.to_thread(self._subscriptions.events_delivered, row.id)
        bundle = notification_bundle(row, kind="event-notification", events_since_start=max(delivered,
                                     data.event_number), event_number=data.event_number, focus=data.claim_response,
                                     resource=resource)
        status, error = await post_bundle(row.endpoint, bundle)
        ok = status is not None and 200 <= status < 300
        await asyncio.to_thread(self._subscriptions.record, Delivery(
            subscription_id=row.id, claim_response=data.claim_response, event_number=data.event_number,
            attempt=attempt, outcome="delivered" if ok else "failed", http_status=status,
            error=None if ok else (error or f"HTTP {status}"), at=datetime.now(UTC)))
        if not ok:
            raise ApplicationError(f"subscription {row.id}: the endpoint answered "
                                   f"{error or f'HTTP {status}'}; retrying with backoff")
        return attempt

    @activity.defn(name=ABANDON_DELIVERY)
    def abandon(self, data: DeliveryInput) -> None:
        """Record that careloom stopped trying this endpoint for this event, and give a person the call: a Task in
        the provider-relations queue to tell the provider the decision another way (once per endpoint and event)."""
        now = datetime.now(UTC)
        self._subscriptions.record(Delivery(
            subscription_id=data.subscription_id, claim_response=data.claim_response,
            event_number=data.event_number, attempt=0, outcome="abandoned",
            error="retries exhausted; the provider can still Claim/$inquire", at=now))
        kind, _, rid = data.claim_response.partition("/")
        response = self._store.get("ClaimResponse", rid) if kind == "ClaimResponse" else None
        member = member_of(response) if response is not None else None
        if member is None:
            return  # nothing was decided here to tell anyone about
        claim = ((response or {}).get("request") or {}).get("reference", "")
        create_task(self._store, CreateTaskInput(
            member_id=member, encounter_id=claim.partition("/")[2] or rid, focus=data.claim_response,
            idempotency_key=f"pas-notify-abandoned/{data.subscription_id}/{data.claim_response}", authored_at=now,
            arguments=CreateTaskArgs(
                kind="notification-failed", queue=NOTIFY_FAILED_QUEUE, priority="urgent",
                description="The provider's system could not be told of this prior-authorization decision: tell "
                            "the requesting provider by phone or fax",
                reason=f"subscription {data.subscription_id}: notification retries exhausted",
                due=now + timedelta(days=1))))
