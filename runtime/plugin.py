"""careloom's Temporal plugin: one object that configures the client, every worker and the replayer alike.

:class:`CareloomPlugin` carries what has to be the same wherever careloom's
workflows run or are replayed:

* **the data converter** (:func:`runtime.temporal_client.data_converter`): the
  shared pydantic payload converter (one per process, see
  :class:`~runtime.temporal_client.SharedPydanticPayloadConverter`), plus, when
  payload keys are configured, the AES-256-GCM codec and failure messages moved
  into an encoded payload. Applied to the client and the replayer; a worker
  always uses its client's converter.
* **the sandbox passthrough modules** (:data:`PASSTHROUGH_MODULES`), added to
  whatever *sandboxed* runner the worker or replayer has (its default one, or
  one given explicitly). An unsandboxed runner is left alone, so
  ``careloom history replay`` keeps replaying without the sandbox.
* **the workflow failure exception types**: which exceptions escaping workflow
  code fail the *workflow* rather than the workflow *task*. See
  :func:`workflow_failure_types` for the choice.
* **eviction at worker shutdown** (:func:`evict_cached_runs`): the runs a
  stopped worker still holds in its cache are torn down inside their own
  workflow loops, as an eviction does, instead of being left to the garbage
  collector.

Give it to the client (:func:`runtime.temporal_client.connect` does) and every
worker built from that client gets it too: the SDK applies a client's plugins
to its workers. :func:`worker_plugins` returns what a ``Worker(...)`` still
needs to be given (nothing, or a worker-only plugin for a client connected
without it), so it is never applied twice. A ``Replayer`` takes it as
``plugins=[CareloomPlugin(settings)]``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from temporalio.bridge.proto.workflow_activation import RemoveFromCache, WorkflowActivation, WorkflowActivationJob
from temporalio.client import Client
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.plugin import SimplePlugin
from temporalio.worker import Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from runtime.data_converter import DATA_CONVERTER, data_converter, data_converter_with_codec
from runtime.errors import ToolFailure
from runtime.settings import Settings

__all__ = ["PASSTHROUGH_MODULES", "CareloomPlugin", "evict_cached_runs", "has_careloom_plugin",
           "sandboxed_runner", "worker_plugins", "workflow_failure_types"]

log = logging.getLogger(__name__)

PLUGIN_NAME = "careloom.CareloomPlugin"

PASSTHROUGH_MODULES: tuple[str, ...] = (
    # Third-party libraries workflow code uses deterministically. Decision signatures are verified in the update
    # validator; cryptography's Rust extension aborts the process if a sandbox imports it a second time.
    "langgraph", "langchain_core", "langsmith", "pydantic", "pydantic_core", "structlog", "zoneinfo", "holidays",
    "cryptography",
    # careloom's workflow side: the modules workflow code imports, none of which does I/O (tests/test_layers.py
    # checks that importing the workflows imports no careloom module outside these). The run interfaces
    # (workflows.*_models) live apart from the workflow modules so pydantic builds them once per process.
    "agents", "guardrails", "tools", "runtime.errors", "runtime.search_attributes", "store.records",
    "store.ledger_entries", "workflows.agent_run", "workflows.approvals", "workflows.outreach_models",
    "workflows.prior_auth_models", "workflows.care_gap_models",
)
"""Modules the sandbox must not re-import per workflow: third-party libraries and careloom's workflow side. The
workflow modules themselves (``workflows.outreach``, ``workflows.prior_auth``) are re-imported per run, as the
sandbox requires. Passing ``agents`` through also keeps its exception classes identical inside and outside the
sandbox, which the failure exception types below rely on (``isinstance`` against the worker's class)."""


def _with_passthrough(runner: WorkflowRunner | None) -> WorkflowRunner:
    """The runner with careloom's passthrough modules, if it is sandboxed; any other runner unchanged."""
    if runner is None:
        runner = SandboxedWorkflowRunner()
    if not isinstance(runner, SandboxedWorkflowRunner):
        return runner  # e.g. UnsandboxedWorkflowRunner for fast replay: nothing to pass through
    return dataclasses.replace(
        runner, restrictions=runner.restrictions.with_passthrough_modules(*PASSTHROUGH_MODULES))


def sandboxed_runner() -> SandboxedWorkflowRunner:
    """The sandboxed runner a careloom worker uses (the SDK default plus the passthrough modules)."""
    runner = _with_passthrough(SandboxedWorkflowRunner())
    assert isinstance(runner, SandboxedWorkflowRunner)
    return runner


def workflow_failure_types(existing: Sequence[type[BaseException]] | None = None,
                           ) -> list[type[BaseException]]:
    """``existing`` plus the exceptions that fail a careloom workflow instead of its workflow task.

    The choice: only :class:`runtime.errors.ToolFailure` (a tool failed for good: non-retryable, or its
    retries are exhausted). Its cause is an activity result recorded in history, so retrying the task
    would replay into the same failure forever. The graph turns the ToolFailures it expects into action
    outcomes and ``AgentRun._step`` turns the others into a non-retryable ``ApplicationError`` named
    after the tool's error type; listing the class here makes any other ToolFailure that escapes
    workflow code fail the run the same way instead of wedging it in task retries.

    Deliberately *not* listed, so they keep failing the workflow task (retried until a fixed worker is
    deployed, the run's state and its pending approvals intact):

    * ``pydantic.ValidationError``: inside a workflow it means the code and the recorded data disagree
      (a model made stricter than old inputs or activity results, a node building an invalid model).
      Replaying the same history raises it again, but deploying a fix or rolling back lets the run
      continue. As a workflow failure, one stricter field would fail every running workflow the moment
      it replayed, and a failed run cannot be resumed.
    * LangGraph's ``GraphRecursionError`` and other programming errors: the same reasoning.
    * ``NondeterminismError``: the golden-history replay gate catches it before deployment; in
      production the task must keep failing until the code is fixed, not close the run.

    Errors careloom raises on purpose (``ApplicationError``, activity and timeout errors) fail the
    workflow already, as the SDK does for every ``FailureError``.
    """
    types = list(existing or [])
    if ToolFailure not in types:
        types.append(ToolFailure)
    return types


class CareloomPlugin(SimplePlugin):
    """careloom's converter, sandbox passthrough and failure types for a client, worker or replayer.

    ``CareloomPlugin(settings)`` uses the converter the settings configure (with the payload codec when
    ``CARELOOM_PAYLOAD_KEYS`` is set); ``CareloomPlugin(codec=...)`` wraps the shared converter with that
    codec; ``CareloomPlugin()`` is the converter without encryption (development, tests).
    """

    def __init__(self, settings: Settings | None = None, *, codec: PayloadCodec | None = None) -> None:
        if settings is not None and codec is not None:
            raise ValueError("give CareloomPlugin settings or a codec, not both")
        if codec is not None:
            converter = data_converter_with_codec(codec)
        elif settings is not None:
            converter = data_converter(settings)
        else:
            converter = DATA_CONVERTER
        self.converter: DataConverter = converter
        super().__init__(
            PLUGIN_NAME,
            data_converter=converter,
            workflow_runner=_with_passthrough,
            workflow_failure_exception_types=workflow_failure_types,
        )

    async def run_worker(self, worker: Worker, next: Callable[[Worker], Awaitable[None]]) -> None:
        """Run the worker; once it has stopped, evict the runs still in its cache (:func:`evict_cached_runs`)."""
        try:
            await super().run_worker(worker, next)
        finally:
            await evict_cached_runs(worker)


SHUTDOWN_EVICTION_TIMEOUT_SECONDS = 20.0
"""How long a stopped worker's ``async with`` waits for its cached runs to be torn down (the SDK waits
``plugin_shutdown_timeout``, 60 s by default, for a plugin's cleanup)."""


async def evict_cached_runs(worker: Worker, *, timeout: float = SHUTDOWN_EVICTION_TIMEOUT_SECONDS) -> int:
    """Evict, inside their own workflow loops, the runs a stopped worker still holds in its cache.

    Temporal's core evicts a cached run when it needs the slot or the run ends, but not when the worker
    shuts down (it only waits for runs with pending work; sdk-python PR #1849 proposes this same fix
    upstream). The SDK then drops the run's workflow instance and the garbage collector closes its
    suspended coroutines: ``GeneratorExit`` is thrown into them on whatever thread collects, outside
    the workflow's loop, possibly while another workflow runs there. A run parked between graph
    invocations has nothing to clean up; one stopped mid graph invocation (an activity in flight) has
    LangGraph's ``Pregel.astream`` / ``PregelRunner.atick`` async generators and LangChain callback
    frames suspended, whose cleanup awaits: "async generator ignored GeneratorExit", "coroutine
    ignored GeneratorExit", and callback tasks created on a foreign event loop.

    So, once the worker has stopped (no activation can run any more), each cached run gets the
    activation an eviction would bring: ``RemoveFromCache``. The SDK cancels the run's tasks inside
    its loop and unwinds them there, as on any eviction; commands are ignored while evicting. Nothing
    is sent to the server (the worker is gone, and an eviction changes no history): the run continues
    on another worker from its history. A run whose eviction fails (code that swallows cancellation),
    or that is stuck in a deadlocked activation, is logged and left to the SDK as before. Returns the
    number of runs evicted. SDK internals are read defensively: without them this does nothing.
    """
    workflow_worker = getattr(worker, "_workflow_worker", None)
    running: dict[str, Any] | None = getattr(workflow_worker, "_running_workflows", None)
    if not running:
        return 0

    def evict_all() -> int:
        evicted = 0
        for run_id, run in list(running.items()):
            stuck = getattr(run, "deadlocked_activation_task", None)
            if stuck is not None and not stuck.done():
                log.warning("run %s is stuck in a deadlocked activation; not evicted at shutdown", run_id)
                continue
            activation = WorkflowActivation(run_id=run_id, jobs=[WorkflowActivationJob(
                remove_from_cache=RemoveFromCache(message="worker shut down",
                                                  reason=RemoveFromCache.EvictionReason.LANG_REQUESTED))])
            try:
                run.activate(activation)
            except Exception:
                log.warning("evicting run %s at worker shutdown failed", run_id, exc_info=True)
                continue
            running.pop(run_id, None)
            evicted += 1
        return evicted

    try:
        evicted = await asyncio.wait_for(asyncio.to_thread(evict_all), timeout)
    except asyncio.TimeoutError:
        log.warning("evicting the cached runs of a stopped worker took longer than %s s; left to the SDK", timeout)
        return 0
    if evicted:
        log.debug("evicted %d cached run(s) at worker shutdown", evicted)
    return evicted


def has_careloom_plugin(client: Client) -> bool:
    """Whether the client carries a :class:`CareloomPlugin` (its workers then get it automatically)."""
    return any(isinstance(plugin, CareloomPlugin) for plugin in client.config()["plugins"])


def worker_plugins(client: Client, settings: Settings | None = None) -> list[CareloomPlugin]:
    """The plugins to pass to ``Worker(client, ...)``: none when the client carries the plugin already,
    else a worker-only one (sandbox passthrough and failure types; the converter stays the client's)."""
    return [] if has_careloom_plugin(client) else [CareloomPlugin(settings)]
