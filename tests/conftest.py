"""Shared fixtures: one real Temporal dev server per session, a real records store (SQLite, or PostgreSQL with
CARELOOM_TEST_DATABASE_URL: tests/databases.py), a worker per test."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import time
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from agents.planner import Planner
from agents.prior_auth_planner import RecommenderActivity
from guardrails.policy import GuardrailPolicy
from runtime.plugin import CareloomPlugin
from runtime.search_attributes import ALL_KEYS
from runtime.settings import Settings
from runtime.temporal_server import temporal_binary
from store.connect import configured_database
from store.sql_records import SqlCareRecordStore
from tests.databases import BACKEND, fresh_postgres_url
from tests.deciding import TEST_SIGNING_KEYS
from tools.criteria import criteria_for
from worker import build_worker
from workflows.outreach import MemberOutreachWorkflow
from workflows.outreach_client import start_outreach
from workflows.outreach_models import OutreachStatus

OPEN_WINDOW = GuardrailPolicy(contact_window_start=time(0), contact_window_end=time.max)
"""A policy whose contact window never closes: for tests that are not about TCPA hours."""
ALWAYS_ASK = OPEN_WINDOW.model_copy(update={"min_confidence": 0.999})
"""OPEN_WINDOW where every action needs a human (no proposal is confident enough)."""


@pytest_asyncio.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        plugins=[CareloomPlugin()],  # the unencrypted converter; workers built from env.client inherit it
        search_attributes=ALL_KEYS,
        dev_server_log_level="error",
    )
    # Shut down only at the very end of the session (sdk-python#300: one environment per session).
    yield environment
    await environment.shutdown()


@pytest_asyncio.fixture(scope="session")
async def client(env: WorkflowEnvironment, settings: Settings,
                 request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    """The session's client; at the end, every careloom run of the session that ended FAILED is checked for the
    person it told (a run_failed ledger entry naming a follow-up Task): any that told nobody is reported."""
    yield env.client
    from history.files import careloom_query
    from store.ledger import DecisionLedger

    failed = [w.id async for w in env.client.list_workflows(careloom_query("ExecutionStatus = 'Failed'"))]
    if not failed:
        return
    told = {e.workflow_id for e in DecisionLedger(configured_database(settings)).entries()
            if e.event == "run_failed" and "follow-up Task/" in (e.reason or "")}
    silent = sorted(set(failed) - told)
    # Past pytest's capture: the figure belongs in the run's output (CI log), whatever the verbosity.
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
                reporter.write_line(f"\ncareloom runs FAILED in this session: {len(failed)}; with a person's "
                                f"follow-up Task in the session ledger: {len(set(failed) & told)}"
                                + (f"; without (or in another test's store): {silent}" if silent else ""))


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("careloom-state")


@pytest.fixture(scope="session")
def settings(state_dir: Path) -> Settings:
    """The session's settings: SQLite in state_dir, or a new PostgreSQL database (tests/databases.py)."""
    url = fresh_postgres_url() if BACKEND == "postgresql" else None
    return Settings(state_dir=state_dir, tool_attempts=1, database_url=url, signing_keys=TEST_SIGNING_KEYS,
                    _env_file=None)


@pytest.fixture(scope="session")
def store(settings: Settings) -> SqlCareRecordStore:
    return SqlCareRecordStore(configured_database(settings))


@pytest.fixture
def planner() -> Planner | None:
    """The planner of the test's worker; None means the one settings choose (the offline rules here)."""
    return None


@pytest.fixture
def recommender() -> RecommenderActivity | None:
    """The determination recommender of the test's worker; None means the one settings choose (offline rules)."""
    return None


@pytest_asyncio.fixture
async def task_queue(client: Client, settings: Settings, store: SqlCareRecordStore,
                     planner: Planner | None, recommender: RecommenderActivity | None) -> AsyncIterator[str]:
    """A worker on a task queue of this test's own."""
    queue = f"test-{uuid.uuid4().hex[:12]}"
    async with build_worker(client, settings, store, task_queue=queue, planner=planner, recommender=recommender):
        yield queue


StartRun = Callable[..., Awaitable[WorkflowHandle]]


@pytest_asyncio.fixture
async def start_run(client: Client, task_queue: str, settings: Settings) -> AsyncIterator[StartRun]:
    """Start outreach runs on this test's worker; runs still open at the end are terminated.

    Parked runs would otherwise outlive their worker, and queries to them would wait for a worker
    that never comes.
    """
    started: list[WorkflowHandle] = []

    async def start(member, *, policy: GuardrailPolicy = OPEN_WINDOW, initiated_by: str = "care-ops-bot"):
        handle, was_started = await start_outreach(
            client, member_id=member.member_id, encounter_id=member.encounter_id, policy=policy,
            task_queue=task_queue, initiated_by=initiated_by, tool_attempts=1,
            salt=settings.pseudonym_salt.get_secret_value())
        assert was_started
        started.append(handle)
        return handle

    yield start
    for handle in started:
        with contextlib.suppress(RPCError):  # already closed: nothing to clean up
            await handle.terminate("test finished")


async def wait_for_status(
    handle: WorkflowHandle, predicate: Callable[[OutreachStatus], bool], timeout: float = 30.0,
    query: Callable = MemberOutreachWorkflow.status,
) -> OutreachStatus:
    """Poll the ``status`` query (of any program's workflow) until the predicate holds; fail with the last."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: OutreachStatus | None = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            last = await handle.query(query)
            if predicate(last):
                return last
        except Exception:  # noqa: BLE001 - the first workflow task may not have run yet
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"status never matched within {timeout}s; last: {last}")


SubmitPriorAuth = Callable[..., Awaitable[WorkflowHandle]]


@pytest_asyncio.fixture
async def submit(client: Client, task_queue: str, settings: Settings,
                 store: SqlCareRecordStore) -> AsyncIterator[SubmitPriorAuth]:
    """Submit prior-authorization requests to this test's worker; runs still open at the end are terminated."""
    from guardrails.prior_auth_policy import PriorAuthPolicy
    from workflows.prior_auth_client import submit_prior_auth

    started: list[WorkflowHandle] = []

    async def go(request, *, policy: PriorAuthPolicy | None = None, received_at=None,  # noqa: ANN001
                 tool_attempts: int = 1) -> WorkflowHandle:
        handle, was_started, _ = await submit_prior_auth(
            client, store, request.bundle, criteria=criteria_for(settings), policy=policy or PriorAuthPolicy(),
            task_queue=task_queue, salt=settings.pseudonym_salt.get_secret_value(), initiated_by="pa-intake",
            tool_attempts=tool_attempts, received_at=received_at)
        assert was_started
        started.append(handle)
        return handle

    yield go
    for handle in started:
        with contextlib.suppress(RPCError):
            await handle.terminate("test finished")


PRODUCTION_VISIBILITY_RPS = 10
"""A production frontend's visibility budget per namespace (``frontend.namespaceRPS.visibility``)."""


class ProductionServer:
    """The second dev server of the session, started with production's visibility limit; ``metrics_url`` is its
    Prometheus endpoint (``service_requests{operation=...}`` per frontend call)."""

    def __init__(self, env: WorkflowEnvironment, metrics_url: str) -> None:
        self.env = env
        self.metrics_url = metrics_url

    async def service_requests(self, operation: str) -> tuple[float, float]:
        """(requests received, requests refused as over the rate limit) of the frontend for ``operation``, summed
        over namespaces, from the server's own metrics."""
        import urllib.request

        def scrape() -> str:
            with urllib.request.urlopen(self.metrics_url, timeout=10) as response:  # noqa: S310 - loopback
                return response.read().decode()

        received = refused = 0.0
        for line in (await asyncio.to_thread(scrape)).splitlines():
            if line.startswith("#") or f'operation="{operation}"' not in line or 'service_name="frontend"' not in line:
                continue
            if line.startswith("service_requests{"):
                received += float(line.rsplit(" ", 1)[1])
            elif line.startswith("service_errors_resource_exhausted{"):
                refused += float(line.rsplit(" ", 1)[1])
        return received, refused


@pytest_asyncio.fixture(scope="session")
async def production_server() -> AsyncIterator[ProductionServer]:
    """A SECOND dev server, with ``env``'s plugins and search attributes and production's visibility limit
    (``--dynamic-config-value frontend.namespaceRPS.visibility=10``), its metrics on a port of its own."""
    from tests.net import free_port

    port = free_port()
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        plugins=[CareloomPlugin()],
        search_attributes=ALL_KEYS,
        dev_server_log_level="error",
        dev_server_extra_args=["--dynamic-config-value",
                               f"frontend.namespaceRPS.visibility={PRODUCTION_VISIBILITY_RPS}",
                               "--metrics-port", str(port)],
    )
    yield ProductionServer(environment, f"http://127.0.0.1:{port}/metrics")
    await environment.shutdown()


@pytest_asyncio.fixture(scope="session")
async def production_client(production_server: ProductionServer) -> Client:
    """A client on :func:`production_server` (carrying :class:`CareloomPlugin`, as ``client`` does)."""
    return production_server.env.client
