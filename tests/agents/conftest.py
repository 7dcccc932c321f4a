"""Fixtures for the model planner: the scripted OpenAI-protocol server and a worker that plans with it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from temporalio.client import Client

from agents.model_planner import ModelConfig, OpenAIPlanner
from runtime.settings import Settings
from store.records import SqliteCareRecordStore
from tests.model_server import ScriptedModelServer, running_model_server
from worker import build_worker


@pytest.fixture
def model_server() -> Iterator[ScriptedModelServer]:
    with running_model_server() as server:
        yield server


def model_planner(server: ScriptedModelServer, **overrides: object) -> OpenAIPlanner:
    config = ModelConfig(model="scripted-model", base_url=server.url, api_key="sk-test-not-a-real-key",
                         timeout_seconds=5.0, input_usd_per_mtok=2.5, output_usd_per_mtok=10.0)
    return OpenAIPlanner(ModelConfig(**{**config.__dict__, **overrides}))


@pytest_asyncio.fixture
async def task_queue(client: Client, settings: Settings, store: SqliteCareRecordStore,
                     model_server: ScriptedModelServer) -> AsyncIterator[str]:
    """A worker on a task queue of this test's own, planning with the scripted model."""
    queue = f"model-{uuid.uuid4().hex[:12]}"
    async with build_worker(client, settings, store, task_queue=queue, planner=model_planner(model_server)):
        yield queue
