"""PAS pend notifications: ``POST/GET/DELETE /fhir/Subscription`` (R4 topic-based Subscriptions backport).

A provider system subscribes to careloom's PAS topic (``criteria`` = :data:`feeds.pas_notify_activities.PAS_TOPIC`)
with a ``rest-hook`` channel, ``payload`` ``application/fhir+json`` and the backport payload-content extension
(``id-only`` by default, ``full-resource`` or ``empty``). Before anything is stored careloom sends the endpoint a
handshake notification: it must answer 2xx within :data:`HANDSHAKE_SECONDS`, and in production the endpoint must
be ``https``. Once stored (status ``active``), a request the caller submitted that was pended and is then decided
is notified by :class:`feeds.pas_notify.PasNotificationWorkflow`. Only the owner reads or deletes a subscription
(anyone else gets 404); a delete turns it ``off``.

Refusals are OperationOutcomes: 400 not a Subscription, 401 not signed in, 404 unknown, 422 a wrong topic, channel,
payload or endpoint (an unreachable one included); nothing is stored on a refusal.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from api.deps import get_settings, get_store
from api.routes_fhir_pas import fhir_caller, fhir_response
from feeds.pas_notify_activities import BACKPORT, PAS_TOPIC, notification_bundle, post_bundle
from store.fhir_validation import InvalidResource, validate_resource
from store.pas_subscriptions import SubscriptionRow, SubscriptionStore
from tools.pas_response import operation_outcome

__all__ = ["HANDSHAKE_SECONDS", "SubscriptionRefused", "router"]

router = APIRouter(prefix="/fhir", tags=["Da Vinci PAS"])

HANDSHAKE_SECONDS = 5.0
"""How long the endpoint has to answer the handshake (a module constant: tests may set it)."""
SUBSCRIPTION_PROFILE = f"{BACKPORT}/backport-subscription"
PAYLOAD_CONTENT = f"{BACKPORT}/backport-payload-content"
CONTENTS = ("empty", "id-only", "full-resource")


class SubscriptionRefused(Exception):
    def __init__(self, status: int, issue: str, message: str) -> None:
        super().__init__(message)
        self.status, self.issue = status, issue


def _content(channel: dict[str, Any]) -> str:
    extensions = (channel.get("_payload") or {}).get("extension") or []
    found = [e.get("valueCode") for e in extensions if isinstance(e, dict) and e.get("url") == PAYLOAD_CONTENT]
    content = found[0] if found else "id-only"
    if content not in CONTENTS:
        raise SubscriptionRefused(422, "value", f"payload content {content!r} is not one of {', '.join(CONTENTS)}: "
                                  f"set channel._payload's {PAYLOAD_CONTENT} extension to one of them")
    return content


def check_subscription(body: Any, *, production: bool) -> tuple[str, str]:  # noqa: ANN401 - any JSON
    """(endpoint, payload content) of a well-formed PAS Subscription; SubscriptionRefused naming the fix."""
    if not isinstance(body, dict) or body.get("resourceType") != "Subscription":
        raise SubscriptionRefused(400, "structure", "the body is not a FHIR Subscription: send a Subscription "
                                  "resource (R4 topic-based backport) as application/fhir+json")
    if body.get("criteria") != PAS_TOPIC:
        raise SubscriptionRefused(422, "value", f"criteria {body.get('criteria')!r} is not a topic careloom offers: "
                                  f"set criteria to {PAS_TOPIC}")
    channel = body.get("channel") if isinstance(body.get("channel"), dict) else {}
    if channel.get("type") != "rest-hook":
        raise SubscriptionRefused(422, "not-supported", f"channel.type {channel.get('type')!r} is not supported: "
                                  "careloom delivers by rest-hook only; set channel.type to rest-hook")
    if channel.get("payload", "application/fhir+json") not in ("application/fhir+json", "application/json"):
        raise SubscriptionRefused(422, "not-supported", "channel.payload must be application/fhir+json")
    endpoint = channel.get("endpoint")
    parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise SubscriptionRefused(422, "required", "channel.endpoint must be the absolute http(s) URL careloom "
                                  "POSTs notifications to")
    if production and parts.scheme != "https":
        raise SubscriptionRefused(422, "security", "channel.endpoint must be https in production: notifications "
                                  "name members' prior-authorization decisions; serve the endpoint over TLS")
    if (headers := channel.get("header")) is not None and not isinstance(headers, list):
        raise SubscriptionRefused(422, "structure", "channel.header must be a list of strings")
    return endpoint, _content(channel)


def _stored(body: dict[str, Any], subscription_id: str, status: str) -> dict[str, Any]:
    resource = {**body, "id": subscription_id, "status": status}
    resource["meta"] = {**(body.get("meta") or {}), "profile": [SUBSCRIPTION_PROFILE]}
    resource.setdefault("reason", "PAS pend notifications")
    return resource


def _refused(err: SubscriptionRefused | InvalidResource) -> JSONResponse:
    if isinstance(err, InvalidResource):
        return fhir_response(400, operation_outcome("structure", f"the Subscription is not valid FHIR R4: {err}; fix it"))
    return fhir_response(err.status, operation_outcome(err.issue, str(err)))


def refuse_internal_endpoint(endpoint: str) -> None:
    """In production: SubscriptionRefused when the endpoint's host resolves to a loopback, private, link-local or
    otherwise non-public address (a subscriber must not make careloom POST into the plan's own network). Checked
    again by nothing at delivery time: a DNS name that changes its answer later is the network's to stop."""
    host = urlsplit(endpoint).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        raise SubscriptionRefused(422, "transient", f"channel.endpoint host {host!r} does not resolve: give a "
                                  "public DNS name") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global:
            raise SubscriptionRefused(422, "security", f"channel.endpoint {host!r} resolves to a non-public address "
                                      f"({ip}): in production notifications go to a provider's public endpoint only")


async def _handshake(row: SubscriptionRow) -> None:
    bundle = notification_bundle(row, kind="handshake", events_since_start=0)
    try:
        status, error = await asyncio.wait_for(post_bundle(row.endpoint, bundle), HANDSHAKE_SECONDS)
    except TimeoutError:
        status, error = None, "timeout"
    if status is None or not 200 <= status < 300:
        raise SubscriptionRefused(422, "transient", (
            f"endpoint unreachable: the handshake POST to channel.endpoint got {error or f'HTTP {status}'} (a 2xx "
            f"within {HANDSHAKE_SECONDS:g} s is needed); make the endpoint answer and subscribe again"))


@router.post("/Subscription", status_code=201, summary="Subscribe to PAS pend notifications (rest-hook)")
async def create_subscription(request: Request) -> Response:
    caller = fhir_caller(request)
    if isinstance(caller, JSONResponse):
        return caller
    settings, store = get_settings(request), get_store(request)
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return fhir_response(400, operation_outcome("structure", "the body is not JSON: send a Subscription as "
                                            "application/fhir+json"))
    try:
        endpoint, content = check_subscription(body, production=settings.environment == "production")
        if settings.environment == "production":
            await asyncio.to_thread(refuse_internal_endpoint, endpoint)
        subscription_id = str(uuid.uuid4())
        resource = validate_resource(_stored(body, subscription_id, "active"))
        row = SubscriptionRow(id=subscription_id, owner=caller.user_id, endpoint=endpoint, topic=PAS_TOPIC,
                              content=content, status="active", created_at=datetime.now(UTC), resource=resource)
        await _handshake(row)
    except (SubscriptionRefused, InvalidResource) as err:
        return _refused(err)
    await asyncio.to_thread(SubscriptionStore(store.db).create, row)
    return fhir_response(201, resource, headers={"Location": f"/fhir/Subscription/{subscription_id}"})


def _owned(request: Request, subscription_id: str) -> SubscriptionRow | JSONResponse:
    """The caller's own subscription, or the OperationOutcome answer (401/403 not signed in; 404 unknown or another
    user's, so ids are never confirmed)."""
    caller = fhir_caller(request)
    if isinstance(caller, JSONResponse):
        return caller
    row = SubscriptionStore(get_store(request).db).get(subscription_id)
    if row is None or row.owner != caller.user_id:
        return fhir_response(404, operation_outcome("not-found", f"no Subscription/{subscription_id} of yours: check the id "
                                            "the POST /fhir/Subscription answered"))
    return row


@router.get("/Subscription/{subscription_id}", summary="A PAS subscription of the caller")
def read_subscription(subscription_id: str, request: Request) -> Response:
    row = _owned(request, subscription_id)
    if isinstance(row, JSONResponse):
        return row
    return fhir_response(200, validate_resource({**row.resource, "status": row.status}))


@router.delete("/Subscription/{subscription_id}", status_code=204, summary="Stop a PAS subscription")
def delete_subscription(subscription_id: str, request: Request) -> Response:
    row = _owned(request, subscription_id)
    if isinstance(row, JSONResponse):
        return row
    SubscriptionStore(get_store(request).db).set_status(subscription_id, "off")
    return Response(status_code=204)
