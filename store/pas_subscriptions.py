"""PAS pend-notification subscriptions and the record of every delivery attempt (issue 23).

A subscription is a FHIR Subscription (R4 topic-based backport, rest-hook channel) on careloom's PAS topic,
owned by the user who created it; only its status changes (``active``, then ``off`` once deleted). Each attempt
to deliver a notification is one append-only ``pas_notifications`` row: which subscription, which ClaimResponse,
the event number, the attempt, the outcome (``delivered``, ``failed`` or ``abandoned`` once retries ran out), the
HTTP status and the error. Schema in ``store/migrations``, revision 0005.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel

from store.database import Database

__all__ = ["Delivery", "SubscriptionRow", "SubscriptionStore"]

_COLUMNS = "id, owner, endpoint, topic, content, status, created_at, resource"

Outcome = Literal["delivered", "failed", "abandoned"]


class SubscriptionRow(BaseModel):
    """One stored Subscription."""

    id: str
    owner: str
    endpoint: str
    topic: str
    content: str
    status: str
    created_at: AwareDatetime
    resource: dict[str, Any]


class Delivery(BaseModel):
    """One delivery attempt."""

    subscription_id: str
    claim_response: str
    event_number: int
    attempt: int
    outcome: Outcome
    http_status: int | None = None
    error: str | None = None
    at: AwareDatetime


def _row(row: tuple[Any, ...]) -> SubscriptionRow:
    return SubscriptionRow(id=row[0], owner=row[1], endpoint=row[2], topic=row[3], content=row[4], status=row[5],
                           created_at=datetime.fromisoformat(row[6]), resource=json.loads(row[7]))


class SubscriptionStore:
    """The subscription tables of the care records database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, row: SubscriptionRow) -> SubscriptionRow:
        self.db.write(lambda r: r.rows(
            f"INSERT INTO pas_subscriptions ({_COLUMNS}) VALUES (:i, :o, :e, :t, :c, :s, :at, :r)",  # noqa: S608
            {"i": row.id, "o": row.owner, "e": row.endpoint, "t": row.topic, "c": row.content, "s": row.status,
             "at": row.created_at.isoformat(), "r": json.dumps(row.resource)}))
        return row

    def get(self, subscription_id: str) -> SubscriptionRow | None:
        found = self.db.read(lambda r: r.one(
            f"SELECT {_COLUMNS} FROM pas_subscriptions WHERE id = :i", {"i": subscription_id}))  # noqa: S608
        return _row(found) if found else None

    def set_status(self, subscription_id: str, status: str) -> None:
        self.db.write(lambda r: r.rows("UPDATE pas_subscriptions SET status = :s WHERE id = :i",
                                       {"s": status, "i": subscription_id}))

    def active_of(self, owners: list[str], topic: str) -> list[SubscriptionRow]:
        """The active subscriptions of these owners on this topic, oldest first."""
        if not owners:
            return []
        names = {f"o{n}": owner for n, owner in enumerate(owners)}
        rows = self.db.read(lambda r: r.rows(
            f"SELECT {_COLUMNS} FROM pas_subscriptions WHERE status = 'active' AND topic = :t "  # noqa: S608
            f"AND owner IN ({', '.join(':' + k for k in names)}) ORDER BY created_at, id", {"t": topic, **names}))
        return [_row(row) for row in rows]

    def next_event_number(self, subscription_id: str, claim_response: str) -> int:
        """The event number of this ClaimResponse's notification: the one it already has (a retry), else one
        more than the subscription's events so far."""
        def read(r):  # noqa: ANN001, ANN202
            same = r.one("SELECT event_number FROM pas_notifications WHERE subscription_id = :s AND "
                         "claim_response = :c LIMIT 1", {"s": subscription_id, "c": claim_response})
            if same:
                return same[0]
            top = r.one("SELECT MAX(event_number) FROM pas_notifications WHERE subscription_id = :s",
                        {"s": subscription_id})
            return (top[0] or 0) + 1
        return self.db.read(read)

    def events_delivered(self, subscription_id: str) -> int:
        row = self.db.read(lambda r: r.one(
            "SELECT COUNT(DISTINCT event_number) FROM pas_notifications WHERE subscription_id = :s "
            "AND outcome = 'delivered'", {"s": subscription_id}))
        return row[0] if row else 0

    def record(self, delivery: Delivery) -> None:
        self.db.write(lambda r: r.rows(
            "INSERT INTO pas_notifications (subscription_id, claim_response, event_number, attempt, outcome, "
            "http_status, error, at) VALUES (:s, :c, :n, :a, :o, :h, :e, :at)",
            {"s": delivery.subscription_id, "c": delivery.claim_response, "n": delivery.event_number,
             "a": delivery.attempt, "o": delivery.outcome, "h": delivery.http_status, "e": delivery.error,
             "at": delivery.at.isoformat()}))

    def deliveries(self, subscription_id: str) -> list[Delivery]:
        rows = self.db.read(lambda r: r.rows(
            "SELECT subscription_id, claim_response, event_number, attempt, outcome, http_status, error, at "
            "FROM pas_notifications WHERE subscription_id = :s ORDER BY at, attempt", {"s": subscription_id}))
        return [Delivery(subscription_id=row[0], claim_response=row[1], event_number=row[2], attempt=row[3],
                         outcome=row[4], http_status=row[5], error=row[6], at=datetime.fromisoformat(row[7]))
                for row in rows]

