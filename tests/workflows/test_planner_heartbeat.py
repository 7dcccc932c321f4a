"""A worker process killed while the model is planning: the planner activity heartbeats, so the run's planning
is retried on another worker within seconds (the heartbeat timeout), not after the 5-minute plan timeout."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client

from agents.planner import HEARTBEAT_TIMEOUT_SECONDS, PLAN_ACTIVITY
from runtime.settings import Settings
from tests.conftest import OPEN_WINDOW
from tests.databases import session_env
from tests.fhir_factory import make_member
from tests.model_server import follow_the_prompt, running_model_server
from workflows.outreach_client import start_outreach

ROOT = Path(__file__).resolve().parents[2]


async def _stop(client: Client, queue: str, workers: tuple[subprocess.Popen[bytes] | None, ...], *,
                finished: bool) -> None:
    """Stop the test's worker processes; terminate the queue's runs still open if the test did not finish them."""
    for process in workers:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    if not finished:
        async for execution in client.list_workflows(f"TaskQueue = '{queue}' AND ExecutionStatus = 'Running'"):
            await client.get_workflow_handle(execution.id).terminate("test finished")


async def _start_and_wait_for_the_model(client: Client, settings: Settings, member, queue: str, model,  # noqa: ANN001
                                        first: subprocess.Popen[bytes]):  # noqa: ANN202
    """Start the member's run on ``queue``; return its handle once the first worker is waiting on the model."""
    handle, _ = await start_outreach(
        client, member_id=member.member_id, encounter_id=member.encounter_id, policy=OPEN_WINDOW,
        task_queue=queue, initiated_by="care-ops-bot", tool_attempts=1, salt=settings.pseudonym_salt.get_secret_value())
    deadline = time.monotonic() + 60
    while not model.requests:
        assert first.poll() is None and time.monotonic() < deadline, first.stderr and first.stderr.read()
        await asyncio.sleep(0.1)
    return handle


def _worker(client: Client, settings: Settings, queue: str, model_url: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARELOOM_", "TEMPORAL_", "OPENAI_"))}
    env.update(TEMPORAL_ADDRESS=client.service_client.config.target_host, CARELOOM_TASK_QUEUE=queue,
               **session_env(settings), CARELOOM_PSEUDONYM_SALT=settings.pseudonym_salt.get_secret_value(),
               CARELOOM_LOG_FORMAT="json", CARELOOM_LOG_LEVEL="WARNING", CARELOOM_MODEL="scripted-model",
               CARELOOM_MODEL_BASE_URL=model_url, CARELOOM_MODEL_API_KEY="sk-test-not-a-real-key",
               CARELOOM_MODEL_TIMEOUT_SECONDS="120")
    return subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


@pytest.mark.slow
async def test_planning_on_a_killed_worker_is_retried_on_another_within_a_minute(
        client: Client, settings: Settings, store) -> None:
    queue = f"heartbeat-{uuid.uuid4().hex[:8]}"
    member = make_member(store)
    with running_model_server() as model:
        # The first answer takes far longer than the test: only a retry on the second worker can plan.
        model.script(lambda request: dataclasses.replace(follow_the_prompt(request), delay=600))
        first = _worker(client, settings, queue, model.url)
        second, result = None, None
        try:
            handle = await _start_and_wait_for_the_model(client, settings, member, queue, model, first)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            killed = time.monotonic()
            second = _worker(client, settings, queue, model.url)
            result = await asyncio.wait_for(handle.result(), timeout=90)
            took = time.monotonic() - killed
        finally:
            await _stop(client, queue, (first, second), finished=result is not None)
        assert 2 == len(model.requests)  # the killed worker's request, then the retry's

    assert result is not None and "completed" == result.status
    assert took < 60, f"the run finished {took:.0f}s after the kill"
    events = (await handle.fetch_history()).events
    [scheduled] = [e.activity_task_scheduled_event_attributes for e in events
                   if e.HasField("activity_task_scheduled_event_attributes")
                   and e.activity_task_scheduled_event_attributes.activity_type.name == PLAN_ACTIVITY]
    assert HEARTBEAT_TIMEOUT_SECONDS == scheduled.heartbeat_timeout.ToTimedelta().total_seconds()
    planned = [e.activity_task_started_event_attributes.attempt for e in events
               if e.HasField("activity_task_started_event_attributes")
               and e.activity_task_started_event_attributes.attempt > 1]
    assert [2] == planned  # only the planning was retried


@pytest.mark.slow
async def test_a_sigterm_during_planning_lets_the_call_finish_before_the_worker_leaves(
        client: Client, settings: Settings, store) -> None:
    """The graceful stop: the model's answer arrives after the SIGTERM and is still used (one request, attempt
    1); the worker exits 0, and a second worker finishes the run."""
    queue = f"graceful-{uuid.uuid4().hex[:8]}"
    member = make_member(store)
    with running_model_server() as model:
        model.script(lambda request: dataclasses.replace(follow_the_prompt(request), delay=5))
        first = _worker(client, settings, queue, model.url)
        second, result = None, None
        try:
            handle = await _start_and_wait_for_the_model(client, settings, member, queue, model, first)
            first.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(first.wait, 40)
            second = _worker(client, settings, queue, model.url)
            result = await asyncio.wait_for(handle.result(), timeout=60)
        finally:
            await _stop(client, queue, (first, second), finished=result is not None)
        assert 1 == len(model.requests)

    assert (0, "completed") == (code, result.status), first.stderr.read().decode()[-2000:] if first.stderr else ""
    events = (await handle.fetch_history()).events
    assert {1} == {e.activity_task_started_event_attributes.attempt for e in events
                   if e.HasField("activity_task_started_event_attributes")}
