"""Rate-limited queues on the real dev server: a burst of member messages queues behind the cap, none fails."""

from __future__ import annotations

import asyncio
import uuid

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from tests.fhir_factory import make_member
from worker import build_worker, rate_limited_workers
from workflows.outreach_client import start_outreach

RUNS = 6
RATE = 2.0  # messages per second, across every worker of the queue


async def test_a_burst_of_messages_waits_for_the_rate_limited_queue(client: Client, settings, store) -> None:
    queue = f"test-limits-{uuid.uuid4().hex[:8]}"
    # Contact window open all day, so no message is deferred by the TCPA hours whatever the time of the test.
    ours = settings.model_copy(update={"task_queue": queue, "messages_per_second": RATE,
                                       "contact_window_start_hour": 0, "contact_window_end_hour": 24})
    queues = ours.activity_queues()
    assert f"{queue}-messages" == queues.messages and queues.model is None
    members = [make_member(store) for _ in range(RUNS)]
    workers = [build_worker(client, ours, store, task_queue=queue), *rate_limited_workers(client, ours, store)]
    assert [queue, f"{queue}-messages"] == [w.task_queue for w in workers]
    async with workers[0], workers[1]:
        handles = await asyncio.gather(*(start_outreach(
            client, member_id=m.member_id, encounter_id=m.encounter_id, policy=ours.guardrail_policy(),
            task_queue=queue, salt=ours.pseudonym_salt.get_secret_value(), tool_attempts=1, queues=queues)
            for m in members))
        results = await asyncio.wait_for(asyncio.gather(*(h.result() for h, _ in handles)), timeout=60)

    assert {"completed"} == {r.status for r in results}
    started = []
    for handle, _ in handles:
        history = await handle.fetch_history()
        scheduled = {e.event_id: e.activity_task_scheduled_event_attributes for e in history.events
                     if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                attrs = scheduled[event.activity_task_started_event_attributes.scheduled_event_id]
                if attrs.activity_type.name == "tools.send_outreach":
                    assert f"{queue}-messages" == attrs.task_queue.name
                    started.append(event.event_time.ToDatetime())
    assert RUNS == len(started)
    spread = (max(started) - min(started)).total_seconds()
    assert spread >= (RUNS - 1) / RATE * 0.7, f"{RUNS} messages started within {spread:.2f}s at {RATE}/s"
