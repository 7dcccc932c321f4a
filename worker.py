"""careloom's Temporal worker: every workflow and activity on the task queue, plus a worker per rate-limited
queue (model calls, member messages) when settings cap them.

The main worker keeps the planner and ``send_outreach`` activities registered too: a run whose input names
no rate-limited queue (started before a cap was configured, or with none) schedules them on its own queue.

Run on its own (``python worker.py``) against a running server (``TEMPORAL_ADDRESS``
or the embedded one started by ``careloom up``); SIGTERM/SIGINT shut it down
cleanly, letting running activities finish (up to :data:`GRACEFUL_SHUTDOWN`), and
the process leaves with ``os._exit`` so no interpreter finalisation races the SDK's
threads (temporalio/sdk-python#300 aborted one stop in 22 with ``PyGILState_Release``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from http.server import ThreadingHTTPServer
from datetime import timedelta
from typing import TYPE_CHECKING, NamedTuple
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.runtime import Runtime
from temporalio.worker import (
    PollerBehaviorAutoscaling,
    ResourceBasedSlotConfig,
    Worker,
    WorkerDeploymentConfig,
    WorkerTuner,
)
from temporalio.workflow import _Definition
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from agents.offline_planner import OfflinePlanner
from agents.planner import Planner, PlannerActivity
from agents.care_gap_planner import GapPlannerActivity
from agents.prior_auth_planner import RecommenderActivity
from feeds.gap_campaign import CareGapCampaignWorkflow
from feeds.gap_campaign_activities import GapCampaignActivities
from feeds.pas_notify import PasNotificationWorkflow
from feeds.pas_notify_activities import PasNotifyActivities
from feeds.sweep import DischargeSweepWorkflow
from feeds.sweep_activities import SweepActivities
from agents.planner_calibration import PlannerCalibration
from guardrails.approval_check import ApprovalCheck
from guardrails.configured import check_deployment, decision_signatures
from runtime.errors import ConfigurationError
from runtime.logging import configure_logging
from runtime.plugin import sandboxed_runner, worker_plugins
from runtime.run_origin import RunOriginInterceptor
from runtime.settings import Settings, get_settings
from runtime.state_dir import private_state_dir
from runtime.temporal_client import connect
from runtime.temporal_server import EmbeddedTemporalServer
from store.connect import configured_database
from store.ledger import DecisionLedger
from store.sql_records import SqlCareRecordStore
from tools.activities import CareTools
from tools.criteria import criteria_for
from tools.care_gaps import CareGapTools
from tools.prior_auth_activities import PriorAuthTools
from tools.quality_measures import shipped_measures
from tools.registry import SEND_OUTREACH
from workflows.agent_run import activity_queues
from workflows.ledger_activity import LedgerActivities
from workflows.programs import ALL_TOOLS, PROGRAMS
from workflows.programs_plugin import ProgramsPlugin

if TYPE_CHECKING:
    from agents.model_client import ModelConfig
    from tools.risk import RiskModelScorer

__all__ = ["ACTIVITY_THREADS", "GRACEFUL_SHUTDOWN", "RESOURCE_TUNER_MAX_ACTIVITIES", "WORKFLOWS", "Hosts", "Stack",
           "WorkerMetrics", "build_hosts", "build_worker", "build_workers", "deployment_config_for", "main",
           "resource_based_tuner", "running_stack", "model_config_for", "planner_for", "rate_limited_workers",
           "recommender_for", "serve_worker_metrics", "warm_up_workflows", "workflow_runner"]

log = structlog.get_logger(__name__)

WORKFLOWS = [*(program.workflow for program in PROGRAMS), DischargeSweepWorkflow, CareGapCampaignWorkflow,
             PasNotificationWorkflow]
GRACEFUL_SHUTDOWN = timedelta(seconds=45)
"""How long a stopping ``python worker.py`` lets running activities finish before cancelling them (a cancelled
one is retried on another worker). Under deploy/careloom.yaml's 60 s termination grace, so the pod leaves on its
own before Kubernetes sends SIGKILL. Workers built in-process (tests, ``careloom up``) keep the SDK's 0."""


ACTIVITY_THREADS = 16
"""Threads of the main worker's activity pool (the fixed pool, the default: no tuner)."""
RESOURCE_TUNER_MAX_ACTIVITIES = 64
"""With ``tuner=resource_based_tuner()``: the most activity slots the tuner may hand out; the activity pool gets
this many threads (a slot without a thread would only queue in the executor)."""


def deployment_config_for(settings: Settings) -> WorkerDeploymentConfig | None:
    """Temporal Worker Versioning from settings: with ``worker_deployment_name`` the worker polls as version
    ``(worker_deployment_name, worker_build_id)`` of that Worker Deployment, and careloom's workflows are PINNED
    (a run finishes on the version it started on; docs/worker-versioning.md). None (unversioned) when no
    deployment is named. A deployment without a build id (or a build id without a deployment) is refused."""
    name, build_id = settings.worker_deployment_name, settings.worker_build_id
    if not name:
        if build_id:
            raise ConfigurationError(
                "CARELOOM_WORKER_BUILD_ID is set but CARELOOM_WORKER_DEPLOYMENT_NAME is not: Worker Versioning "
                "needs both (set the deployment name, or unset the build id for an unversioned worker)")
        return None
    if not build_id:
        raise ConfigurationError(
            f"CARELOOM_WORKER_DEPLOYMENT_NAME is {name!r} but CARELOOM_WORKER_BUILD_ID is not set: a versioned "
            "worker needs both (set the build id, e.g. the release's git sha, or unset the deployment name)")
    if "." in name:
        raise ConfigurationError(
            f"CARELOOM_WORKER_DEPLOYMENT_NAME {name!r} contains '.', which Temporal uses to join it with "
            "CARELOOM_WORKER_BUILD_ID; choose a name without one")
    return WorkerDeploymentConfig(version=WorkerDeploymentVersion(name, build_id), use_worker_versioning=True,
                                  default_versioning_behavior=VersioningBehavior.PINNED)


def resource_based_tuner(*, target_cpu: float = 0.9, target_memory: float = 0.8,
                         max_activities: int = RESOURCE_TUNER_MAX_ACTIVITIES) -> WorkerTuner:
    """The SDK's resource-based tuner (slots handed out while the host's CPU and memory stay under the targets),
    for ``build_worker(tuner=...)``; bench/worker_tuning_bench.py measures it against the fixed pool."""
    return WorkerTuner.create_resource_based(
        target_memory_usage=target_memory, target_cpu_usage=target_cpu,
        activity_config=ResourceBasedSlotConfig(maximum_slots=max_activities))


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandboxed runner careloom workers use (kept for callers; workers and the replayer get it, with
    the data converter and failure types, from :class:`runtime.plugin.CareloomPlugin`)."""
    return sandboxed_runner()


def warm_up_workflows() -> None:
    """Build, in the calling thread, what workflow code would otherwise build on its first activation.

    The agent graph is compiled once per process, and compiling reads node
    source and parses it. Done inside a workflow thread on a cold machine this
    can exceed Temporal's 2 s deadlock limit; the SDK then interrupts the thread
    with an asynchronous exception, and one landing inside CPython 3.11.7's AST
    constructor corrupts its recursion counter for the rest of the process
    (python/cpython#106905). Compiling here, before any workflow runs, keeps
    first activations as fast as later ones.
    """
    for program in PROGRAMS:
        program.graph()


def model_config_for(settings: Settings) -> ModelConfig | None:
    """The model endpoint's configuration when ``CARELOOM_MODEL`` is set, else None (the offline rules)."""
    if not settings.model:
        return None
    import os

    from agents.model_client import ModelConfig

    key = (settings.model_api_key.get_secret_value() if settings.model_api_key
           else os.environ.get("OPENAI_API_KEY", "not-needed"))
    return ModelConfig(
        model=settings.model, base_url=settings.model_base_url, api_key=key, api_version=settings.model_api_version,
        timeout_seconds=settings.model_timeout_seconds, temperature=settings.model_temperature,
        logprobs=settings.model_logprobs, phi=settings.model_phi,
        input_usd_per_mtok=settings.model_input_usd_per_mtok,
        output_usd_per_mtok=settings.model_output_usd_per_mtok)


def planner_for(settings: Settings, store: SqlCareRecordStore | None = None) -> Planner:
    """The model planner when ``CARELOOM_MODEL`` is set, else the offline rules. With ``store`` the model
    planner checks the text it writes against each member's own identifiers (agents.generated_text)."""
    config = model_config_for(settings)
    if config is None:
        return OfflinePlanner()
    from agents.generated_text import StoreIdentifiers
    from agents.model_planner import OpenAIPlanner

    return OpenAIPlanner(config, identifiers=StoreIdentifiers(store) if store is not None else None)


def recommender_for(settings: Settings, store: SqlCareRecordStore | None = None, *,
                    calibration: PlannerCalibration | None = None) -> RecommenderActivity:
    """The determination recommender: the model when ``CARELOOM_MODEL`` is set, else the offline rules. With
    ``store`` the model's explanation is checked against each member's own identifiers (agents.generated_text);
    with ``calibration`` its confidence is calibrated (docs/calibration.md)."""
    config = model_config_for(settings)
    if config is None:
        return RecommenderActivity(calibration=calibration)
    from agents.generated_text import StoreIdentifiers
    from agents.prior_auth_model import ModelDeterminationRecommender

    return RecommenderActivity(ModelDeterminationRecommender(
        config, identifiers=StoreIdentifiers(store) if store is not None else None), calibration=calibration)


class Hosts(NamedTuple):
    """The objects whose activities run the programs' tools, built once per worker process and given to every
    worker of it (:class:`workflows.programs_plugin.ProgramsPlugin` binds the declared tools to them)."""

    care: CareTools
    prior_auth: PriorAuthTools
    planner: PlannerActivity
    recommender: RecommenderActivity
    ledger: LedgerActivities
    care_gaps: CareGapTools
    gap_planner: GapPlannerActivity

    @property
    def planners(self) -> list[object]:
        return [self.planner, self.recommender, self.gap_planner]


def risk_scorer_for(settings: Settings) -> RiskModelScorer:
    """The learned readmission-risk scorer: the model registry's champion and challenger (``<state_dir>/mlflow.db``,
    or ``CARELOOM_MODEL_REGISTRY_URI``), verified at start; with none (or a refused one) the risk tool scores LACE
    alone and says why in every RiskScore (learning/serving.py)."""
    from learning.registry import ModelRegistry
    from learning.serving import scorer_from_registry

    return scorer_from_registry(settings.state_dir, registry=ModelRegistry.from_settings(settings))


def build_hosts(settings: Settings, store: SqlCareRecordStore, *, planner: Planner | None = None,
                recommender: RecommenderActivity | None = None, scorer: RiskModelScorer | None = None) -> Hosts:
    """The tool hosts: the keys approvals must be signed with come from this worker's configuration, never from a
    run's input (every write passes the same :class:`guardrails.approval_check.ApprovalCheck`). ``scorer``: the
    learned risk model injected into the risk tool (default: :func:`risk_scorer_for`)."""
    keys = decision_signatures(settings).keys
    gate = ApprovalCheck(keys)
    # Confidence calibrators installed under <state_dir>/calibration/current apply to every planner's output;
    # with none installed the planners' raw confidence is used, as before (docs/calibration.md).
    calibration = PlannerCalibration.for_state_dir(settings.state_dir)
    return Hosts(
        care=CareTools(store, settings, gate, scorer=scorer if scorer is not None else risk_scorer_for(settings)),
        prior_auth=PriorAuthTools(store, criteria_for(settings), gate),
        planner=PlannerActivity(planner or planner_for(settings, store), fallback=OfflinePlanner(),
                                calibration=calibration),
        recommender=recommender or recommender_for(settings, store, calibration=calibration),
        ledger=LedgerActivities(DecisionLedger(store.db), keys),
        care_gaps=CareGapTools(store, list(shipped_measures())),
        gap_planner=GapPlannerActivity(calibration=calibration),
    )


def build_worker(
    client: Client,
    settings: Settings,
    store: SqlCareRecordStore,
    *,
    planner: Planner | None = None,
    recommender: RecommenderActivity | None = None,
    hosts: Hosts | None = None,
    task_queue: str | None = None,
    executor: ThreadPoolExecutor | None = None,
    graceful_shutdown: timedelta = timedelta(0),
    tuner: WorkerTuner | None = None,
    autoscale_pollers: bool = False,
) -> Worker:
    """A worker with every careloom workflow and activity: the programs' from :class:`ProgramsPlugin`, the
    discharge sweep's (a feed) here.

    Converter, sandbox passthrough and failure types come from :class:`runtime.plugin.CareloomPlugin`: from
    the client when it carries it (``connect`` does; the SDK applies a client's plugins to its workers),
    else from a worker-level one. Never both.

    Versioned (PINNED) when settings name a Worker Deployment (:func:`deployment_config_for`). ``tuner`` (e.g.
    :func:`resource_based_tuner`) replaces the SDK's fixed slot counts; the activity pool then gets
    :data:`RESOURCE_TUNER_MAX_ACTIVITIES` threads instead of :data:`ACTIVITY_THREADS`. ``autoscale_pollers``:
    workflow and activity pollers scale on the server's feedback (``PollerBehaviorAutoscaling``) instead of
    the SDK's fixed 5 each.
    """
    deployment = deployment_config_for(settings)  # a half-configured deployment fails before any warm-up
    warm_up_workflows()
    queue = task_queue or settings.task_queue
    threads = ACTIVITY_THREADS if tuner is None else RESOURCE_TUNER_MAX_ACTIVITIES
    hosts = hosts or build_hosts(settings, store, planner=planner, recommender=recommender)
    return Worker(
        client,
        task_queue=queue,
        workflows=[DischargeSweepWorkflow, CareGapCampaignWorkflow, PasNotificationWorkflow],
        activities=[*SweepActivities(client, settings, store, queue).activities(),
                    *GapCampaignActivities(client, settings, store, queue).activities(),
                    *PasNotifyActivities(store).activities()],
        activity_executor=executor or ThreadPoolExecutor(max_workers=threads, thread_name_prefix="careloom-tool"),
        plugins=[ProgramsPlugin(hosts), *worker_plugins(client, settings)],
        interceptors=[run_origin(client, queue)],
        graceful_shutdown_timeout=graceful_shutdown,
        tuner=tuner,
        deployment_config=deployment,
        **({"workflow_task_poller_behavior": PollerBehaviorAutoscaling(),
            "activity_task_poller_behavior": PollerBehaviorAutoscaling()} if autoscale_pollers else {}),
    )


def build_workers(client: Client, settings: Settings, store: SqlCareRecordStore, *,
                  planner: Planner | None = None, recommender: RecommenderActivity | None = None,
                  graceful_shutdown: timedelta = timedelta(0),
                  scorer: RiskModelScorer | None = None) -> list[Worker]:
    """The main worker and the rate-limited queues' workers, as ``python worker.py`` runs them (what an
    in-process stack should run too: a run started with queues from settings needs their pollers), sharing
    one set of hosts. ``scorer``: the learned risk model (default: the registry's, :func:`risk_scorer_for`)."""
    hosts = build_hosts(settings, store, planner=planner, recommender=recommender, scorer=scorer)
    return [build_worker(client, settings, store, hosts=hosts, graceful_shutdown=graceful_shutdown),
            *rate_limited_workers(client, settings, store, hosts=hosts, graceful_shutdown=graceful_shutdown)]


def run_origin(client: Client, *workflow_queues: str) -> RunOriginInterceptor:
    """The interceptor that runs activities only for careloom's workflows on these workflow task queues."""
    types = {_Definition.must_from_class(w).name for w in WORKFLOWS}  # the SDK's own reader of @workflow.defn
    return RunOriginInterceptor(client, task_queues=workflow_queues, workflow_types=types)


def rate_limited_workers(client: Client, settings: Settings, store: SqlCareRecordStore, *,
                         planner: Planner | None = None, recommender: RecommenderActivity | None = None,
                         hosts: Hosts | None = None, executor: ThreadPoolExecutor | None = None,
                         graceful_shutdown: timedelta = timedelta(0),
                         workflow_queues: tuple[str, ...] = ()) -> list[Worker]:
    """Workers for the rate-limited queues settings name (model calls, member messages); none if unset.

    ``max_task_queue_activities_per_second`` is enforced by the Temporal server across every worker of the
    queue, so N worker hosts share the cap; activities beyond it wait in the queue (their runs set no
    schedule-to-start timeout), they do not fail.
    """
    queues = activity_queues(settings)
    workflow_queues = workflow_queues or (settings.task_queue,)
    if not (queues.model or queues.messages):
        return []
    hosts = hosts or build_hosts(settings, store, planner=planner, recommender=recommender)
    workers = []
    pool = executor or ThreadPoolExecutor(max_workers=8, thread_name_prefix="careloom-limited")
    limited = ((queues.model, [t for t in ALL_TOOLS if t.kind == "planner"], hosts.planners,
                settings.model_activities_per_second),
               (queues.messages, [SEND_OUTREACH], [hosts.care], settings.messages_per_second))
    for queue, tools, queue_hosts, rate in limited:
        if queue:
            workers.append(Worker(client, task_queue=queue, activity_executor=pool,
                                  plugins=[ProgramsPlugin(queue_hosts, tools=tools, workflows=False),
                                           *worker_plugins(client, settings)],
                                  max_task_queue_activities_per_second=rate,
                                  interceptors=[run_origin(client, *workflow_queues)],
                                  graceful_shutdown_timeout=graceful_shutdown,
                                  deployment_config=deployment_config_for(settings)))
    return workers


@dataclass
class Stack:
    """The local stack: Temporal (embedded or configured), the records store and the workers."""

    client: Client
    store: SqlCareRecordStore
    server: EmbeddedTemporalServer | None

    @property
    def ui_url(self) -> str | None:
        return self.server.ui_url if self.server else None


@asynccontextmanager
async def running_stack(settings: Settings, *, with_worker: bool = True,
                        scorer: RiskModelScorer | None = None) -> AsyncIterator[Stack]:
    """Start what is needed (``careloom up``, ``careloom demo``, the evaluation), yield it, and stop it all in
    reverse order; with ``TEMPORAL_ADDRESS`` set nothing is started but the workers. ``scorer``: the learned
    risk model the workers serve (default: the registry's under the state folder; the promotion gate gives
    the candidate)."""
    async with contextlib.AsyncExitStack() as stack:
        private_state_dir(settings.state_dir)  # 0700; member data and histories live here
        server = None
        if settings.embedded:
            server = await stack.enter_async_context(EmbeddedTemporalServer(settings))
        client = await connect(settings)
        store = SqlCareRecordStore(configured_database(settings))
        stack.callback(store.db.close)
        private_state_dir(settings.state_dir)  # a records database a process without careloom's umask just made
        if with_worker:
            # The rate-limited queues' workers too: runs started with queues from settings need their pollers.
            for worker in build_workers(client, settings, store, scorer=scorer):
                await stack.enter_async_context(worker)
        yield Stack(client=client, store=store, server=server)


async def run_until_signalled(*workers: Worker) -> None:
    """Run the workers until SIGTERM or SIGINT, then shut them down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        log.info("worker.started", task_queues=[w.task_queue for w in workers])
        await stop.wait()
        log.info("worker.stopping")
    log.info("worker.stopped")


async def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    check_deployment(settings)  # the routing and criteria files and the keys, before anything starts
    # The database first: an unreachable one, refused credentials or a schema behind the code stop the worker
    # before it polls a single task (it would fail every activity it took).
    store = SqlCareRecordStore(configured_database(settings))
    metrics = serve_worker_metrics(settings)
    client = await connect(settings, runtime=metrics.runtime if metrics else None)
    gauges = None
    if metrics is not None:
        from workflows.run_gauges import RunGauges

        gauges = asyncio.create_task(RunGauges(client, settings, store.db).run())
    try:
        await run_until_signalled(*build_workers(client, settings, store, graceful_shutdown=GRACEFUL_SHUTDOWN))
    finally:
        if gauges is not None:
            gauges.cancel()
        if metrics is not None:
            metrics.server.shutdown()


class WorkerMetrics(NamedTuple):
    runtime: Runtime
    """The Temporal runtime to connect with: its telemetry is what ``/metrics`` appends."""
    server: ThreadingHTTPServer
    """``/metrics`` on ``CARELOOM_METRICS_HOST:CARELOOM_WORKER_METRICS_PORT``; ``.shutdown()`` stops it."""


def serve_worker_metrics(settings: Settings) -> WorkerMetrics | None:
    """With ``CARELOOM_WORKER_METRICS_PORT`` set: serve /metrics there (careloom's registry, then the SDK's
    telemetry, which the Temporal runtime exports on a loopback port of its own). None otherwise."""
    if settings.worker_metrics_port is None:
        return None
    import socket

    from runtime.metrics_server import sdk_runtime, serve_metrics

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        sdk_port = probe.getsockname()[1]
    runtime = sdk_runtime(f"127.0.0.1:{sdk_port}")
    server = serve_metrics(settings.metrics_host, settings.worker_metrics_port, f"http://127.0.0.1:{sdk_port}/metrics")
    return WorkerMetrics(runtime, server)


def _leave(code: int) -> None:
    """Flush what was logged, then end the process without interpreter finalisation.

    The Temporal SDK's Rust threads can still call into Python while the interpreter finalises, which aborts
    with ``Fatal Python error: PyGILState_Release`` (temporalio/sdk-python#300; one SIGTERM stop in 22, and
    2 in 20 on a busy machine, measured). Everything worth keeping is done by now: the workers have shut down,
    the store commits each transaction, and the server retries whatever did not finish. So skip finalisation.
    """
    for sig in (signal.SIGTERM, signal.SIGINT):  # asyncio.run reset them to the defaults: no kill mid-flush
        signal.signal(sig, signal.SIG_IGN)
    with contextlib.suppress(Exception):
        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _stop_while_starting(signum: int, _frame: object) -> None:
    """SIGTERM/SIGINT before the workers poll (opening the database, connecting, warming up): nothing has been
    taken from a queue yet, so leave at once with 0, as a stop should, instead of dying of the signal.
    :func:`run_until_signalled` replaces this with the graceful stop once the workers run."""
    with contextlib.suppress(OSError):
        os.write(2, f"careloom worker: stopped by {signal.Signals(signum).name} while starting\n".encode())
    _leave(0)


def _start() -> None:
    """``python worker.py``: exits 0 after a SIGTERM/SIGINT stop, 2 with the problem and the fix on stderr when
    a setting or the database stops the worker (not a traceback), 1 with the traceback on anything else."""
    from pydantic import ValidationError

    from runtime.errors import CareloomError
    from runtime.state_dir import private_umask

    private_umask()  # the records database and logs it creates are the owner's only (0600), as the CLI's are

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop_while_starting)
    code = 0
    try:
        asyncio.run(main())
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        sys.stderr.write(f"careloom worker: invalid setting CARELOOM_{where.upper()}: {first['msg']}\n")
        code = 2
    except CareloomError as err:
        sys.stderr.write(f"careloom worker: cannot start: {err}\n")
        code = 2
    except BaseException:  # noqa: BLE001 - reported, then the same exit without finalisation
        traceback.print_exc()
        code = 1
    _leave(code)


if __name__ == "__main__":
    _start()
