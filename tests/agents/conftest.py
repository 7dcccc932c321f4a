"""Fixtures for the model planner: the scripted OpenAI-protocol server and a worker that plans with it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from agents.generated_text import StoreIdentifiers
from agents.model_planner import ModelConfig, OpenAIPlanner
from store.records import CareRecordStore
from tests.model_server import ScriptedModelServer, running_model_server


@pytest.fixture
def model_server() -> Iterator[ScriptedModelServer]:
    with running_model_server() as server:
        yield server


def model_planner(server: ScriptedModelServer, store: CareRecordStore | None = None,
                  **overrides: object) -> OpenAIPlanner:
    """The model planner on the scripted server; with ``store`` it reads members' identifiers, as the worker's does."""
    config = ModelConfig(model="scripted-model", base_url=server.url, api_key="sk-test-not-a-real-key",
                         timeout_seconds=5.0, input_usd_per_mtok=2.5, output_usd_per_mtok=10.0)
    return OpenAIPlanner(dataclasses.replace(config, **overrides),
                         identifiers=StoreIdentifiers(store) if store is not None else None)


@pytest.fixture
def planner(model_server: ScriptedModelServer, store: CareRecordStore) -> OpenAIPlanner:
    """The workers of these tests plan with the scripted model, reading identifiers from the session's store."""
    return model_planner(model_server, store)
