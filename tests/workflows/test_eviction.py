"""A run torn down mid graph invocation (an activity in flight) goes quietly and completes on a new worker.

Two ways a worker lets go of a cached run:

* **eviction** (``max_cached_workflows`` pressure, a failed task): the SDK cancels the run's tasks inside
  the workflow loop, so LangGraph's stream unwinds there;
* **worker shutdown**: Temporal's core evicts nothing (it only waits for runs with pending work), so the SDK
  drops the run and the garbage collector finalizes its suspended coroutines, LangGraph's ``Pregel.astream``
  and ``PregelRunner.atick`` async generators and LangChain's callback frames with them, outside any workflow
  loop, on whatever thread collects them.

Without ``CareloomPlugin``'s eviction at shutdown (``runtime.plugin.evict_cached_runs``) the second one reported
"async generator ignored GeneratorExit" (``Pregel.astream``), "aclose(): asynchronous generator is already
running" (the stream's ``aclosing`` in ``_step``), "coroutine ignored GeneratorExit" (a node's
``arun_with_retry``, whose ``on_chain_error`` callback created a task on the test's event loop) and a TypeError
from ``atick``'s cleanup, all through ``sys.unraisablehook``. The tests fail on any such message, from any
channel.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.plugin import SimplePlugin
from temporalio.worker import WorkerConfig

from agents.offline_planner import OfflinePlanner
from agents.planner import PlannerInput, PlannerOutput
from runtime.plugin import CareloomPlugin
from tests.conftest import OPEN_WINDOW
from tests.fhir_factory import make_member
from worker import build_worker
from workflows.outreach_client import start_outreach

NOISE = ("GeneratorExit", "asynchronous generator", "async generator", "async_generator", "destroyed but it is pending",
         "Eviction processed", "could not be evicted", "Failed running eviction")


class TornDownNoise:
    """Everything reported while the run is torn down: unraisable exceptions, log records, warnings, stderr."""

    def __init__(self) -> None:
        self.reports: list[str] = []

    def found(self, stderr: str = "") -> list[str]:
        lines = self.reports + stderr.splitlines()
        return [line for line in lines if line.startswith("unraisable:") or any(word in line for word in NOISE)]


@contextmanager
def torn_down_noise(monkeypatch: pytest.MonkeyPatch) -> Iterator[TornDownNoise]:
    noise = TornDownNoise()

    def unraisable(report: Any) -> None:  # noqa: ANN401
        noise.reports.append(f"unraisable: {report.err_msg or 'Exception ignored in'} {report.object!r}: "
                             f"{type(report.exc_value).__name__}: {report.exc_value}")

    class Records(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = f"log {record.name} {record.levelname}: {record.getMessage()}"
            if record.exc_info and record.exc_info[1] is not None:
                text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            noise.reports.append(text)

    monkeypatch.setattr(sys, "unraisablehook", unraisable)
    handler = Records(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    evictions = logging.getLogger("temporalio.worker._workflow")  # "Evicting workflow ..." is a debug record
    level = evictions.level
    evictions.setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield noise
            gc.collect()  # finalize whatever the torn-down run left behind, while we listen
        noise.reports += [f"warning {w.category.__name__}: {w.message}" for w in caught]
    finally:
        evictions.setLevel(level)
        root.removeHandler(handler)


class SlowFirstPlanner:
    """The offline rules, but the first planning attempt hangs until cancelled (the worker shuts down)."""

    name = "offline-rules/1"

    def __init__(self) -> None:
        self.attempts = 0
        self.in_flight = asyncio.Event()

    async def plan(self, data: PlannerInput) -> PlannerOutput:
        self.attempts += 1
        if self.attempts == 1:
            self.in_flight.set()
            await asyncio.sleep(120)
        return await OfflinePlanner().plan(data)


class WorkerOptions(SimplePlugin):
    """Worker options build_worker does not take, set through the client (whose plugins its workers get)."""

    def __init__(self, **options: Any) -> None:  # noqa: ANN401
        super().__init__("tests.WorkerOptions")
        self._options = options

    def configure_worker(self, config: WorkerConfig) -> WorkerConfig:
        config = super().configure_worker(config)
        config.update(self._options)  # type: ignore[typeddict-item]
        return config


def _scheduled(history: Any) -> Counter[str]:  # noqa: ANN401
    return Counter(e.activity_task_scheduled_event_attributes.activity_type.name
                   for e in history.events if e.HasField("activity_task_scheduled_event_attributes"))


EVERY_TOOL_ONCE = {"tools.lookup_member": 1, "tools.get_clinical_context": 1, "tools.check_eligibility": 1,
                   "tools.score_readmission_risk": 1, "agents.plan_outreach": 1, "tools.create_task": 1,
                   "tools.send_outreach": 1, "tools.draft_care_plan": 1}


async def test_worker_shutdown_with_an_activity_in_flight_is_silent_and_a_new_worker_finishes_the_run(
    client: Client, settings, store, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Shut the worker down while planning (an activity) runs inside the graph invocation: nothing is reported
    when the dropped run is garbage collected, and a new worker replays it and completes it, every tool once."""
    planner = SlowFirstPlanner()
    member = make_member(store)
    queue = f"evict-{uuid.uuid4().hex[:8]}"
    with torn_down_noise(monkeypatch) as noise:
        async with build_worker(client, settings, store, task_queue=queue, planner=planner):
            handle, _ = await start_outreach(client, member_id=member.member_id, encounter_id=member.encounter_id,
                                             policy=OPEN_WINDOW, task_queue=queue, tool_attempts=1,
                                             salt=settings.pseudonym_salt.get_secret_value())
            await asyncio.wait_for(planner.in_flight.wait(), timeout=30)
        gc.collect()  # the first worker's cache is gone: its run is garbage now
        async with build_worker(client, settings, store, task_queue=queue, planner=planner):
            result = await asyncio.wait_for(handle.result(), timeout=60)
    assert [] == noise.found(capfd.readouterr().err)

    assert "completed" == result.status
    assert {"executed"} == {a.status for a in result.actions}
    assert 2 == planner.attempts  # the cancelled attempt, then the new worker's
    assert EVERY_TOOL_ONCE == dict(_scheduled(await handle.fetch_history()))


async def test_eviction_after_every_workflow_task_is_silent_and_the_run_completes(
    client: Client, settings, store, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """With no workflow cache the run is evicted after every task, each time with activities in flight inside
    the graph invocation (the cancellation path), and replayed from history for the next: silent, and the run
    completes exactly as a cached one does."""
    no_cache = Client(client.service_client, namespace=client.namespace,
                      plugins=[CareloomPlugin(), WorkerOptions(max_cached_workflows=0)])
    member = make_member(store)
    queue = f"evict-{uuid.uuid4().hex[:8]}"
    with torn_down_noise(monkeypatch) as noise:
        async with build_worker(no_cache, settings, store, task_queue=queue):
            handle, _ = await start_outreach(no_cache, member_id=member.member_id,
                                             encounter_id=member.encounter_id, policy=OPEN_WINDOW,
                                             task_queue=queue, tool_attempts=1,
                                             salt=settings.pseudonym_salt.get_secret_value())
            result = await asyncio.wait_for(handle.result(), timeout=60)
    assert [] == noise.found(capfd.readouterr().err)
    evictions = [r for r in noise.reports if "Evicting workflow" in r]
    assert len(evictions) >= 5, "the worker should have evicted the run after each workflow task"

    assert "completed" == result.status
    assert EVERY_TOOL_ONCE == dict(_scheduled(await handle.fetch_history()))
