"""``PasNotificationWorkflow``: tell a provider's subscribed systems that a pended request was decided.

Started by :class:`workflows.prior_auth.PriorAuthWorkflow` as an abandoned child once a ClaimResponse is issued
after a human decision (the request had been pended). One activity lists the active subscriptions on careloom's
PAS topic of whoever submitted the request; each is then delivered by its own activity, concurrently, retried
with backoff by Temporal (:data:`DELIVERY_RETRY`, bounded by :data:`DELIVERY_DEADLINE`), so one dead endpoint
never holds up another and a worker restart loses nothing. Every attempt is recorded by the delivery activity;
when the retries run out the failure is recorded as ``abandoned``, a person in the provider-relations queue gets
a Task to tell the provider another way, and the workflow finishes (the provider can still ``Claim/$inquire``).

History holds identifiers only: the Claim id, the ClaimResponse reference, subscription ids, the run id.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

__all__ = ["ABANDON_DELIVERY", "DELIVERY_DEADLINE", "DELIVERY_RETRY", "DELIVER_NOTIFICATION", "FIND_SUBSCRIPTIONS",
           "DeliveryInput", "NotifyInput", "NotifyResult", "PasNotificationWorkflow", "SubscriptionRef"]

FIND_SUBSCRIPTIONS = "pas_notify.find_subscriptions"
DELIVER_NOTIFICATION = "pas_notify.deliver"
ABANDON_DELIVERY = "pas_notify.abandon"

DELIVERY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                             maximum_interval=timedelta(minutes=5))
"""Backoff between attempts to reach one endpoint: 1 s, 2 s, 4 s ... up to 5 minutes."""
DELIVERY_DEADLINE = timedelta(hours=24)
"""How long careloom keeps trying one endpoint before it records the delivery abandoned."""


class NotifyInput(BaseModel):
    """Identifiers of the decided request; nothing from the record."""

    claim_id: str
    claim_response: str = Field(description="ClaimResponse/<id> as issued.")
    workflow_id: str = Field(description="The prior-authorization run that issued it.")
    max_attempts: int = Field(default=0, description="Attempts per endpoint; 0: until DELIVERY_DEADLINE.")


class SubscriptionRef(BaseModel):
    subscription_id: str
    event_number: int


class DeliveryInput(BaseModel):
    subscription_id: str
    claim_response: str
    event_number: int
    final: bool = False


class NotifyResult(BaseModel):
    delivered: list[str] = Field(default_factory=list)
    abandoned: list[str] = Field(default_factory=list)


@workflow.defn(name="PasNotificationWorkflow")
class PasNotificationWorkflow:
    @workflow.run
    async def run(self, data: NotifyInput) -> NotifyResult:
        found = await workflow.execute_activity(
            FIND_SUBSCRIPTIONS, data, result_type=list[SubscriptionRef], start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)))
        outcomes = await asyncio.gather(*(self._deliver(data, ref) for ref in found))
        result = NotifyResult()
        for ref, delivered in zip(found, outcomes, strict=True):
            (result.delivered if delivered else result.abandoned).append(ref.subscription_id)
        return result

    async def _deliver(self, data: NotifyInput, ref: SubscriptionRef) -> bool:
        delivery = DeliveryInput(subscription_id=ref.subscription_id, claim_response=data.claim_response,
                                 event_number=ref.event_number)
        retry = DELIVERY_RETRY
        if data.max_attempts:
            retry = RetryPolicy(initial_interval=retry.initial_interval, backoff_coefficient=retry.backoff_coefficient,
                                maximum_interval=retry.maximum_interval, maximum_attempts=data.max_attempts)
        try:
            await workflow.execute_activity(DELIVER_NOTIFICATION, delivery, start_to_close_timeout=timedelta(seconds=30),
                                            schedule_to_close_timeout=DELIVERY_DEADLINE, retry_policy=retry)
        except ActivityError:
            await workflow.execute_activity(
                ABANDON_DELIVERY, delivery, start_to_close_timeout=timedelta(minutes=1),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)))
            return False
        return True
