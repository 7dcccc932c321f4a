"""Fixtures for the model planner: the scripted OpenAI-protocol server and a worker that plans with it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from agents.model_planner import ModelConfig, OpenAIPlanner
from tests.model_server import ScriptedModelServer, running_model_server


@pytest.fixture
def model_server() -> Iterator[ScriptedModelServer]:
    with running_model_server() as server:
        yield server


def model_planner(server: ScriptedModelServer, **overrides: object) -> OpenAIPlanner:
    config = ModelConfig(model="scripted-model", base_url=server.url, api_key="sk-test-not-a-real-key",
                         timeout_seconds=5.0, input_usd_per_mtok=2.5, output_usd_per_mtok=10.0)
    return OpenAIPlanner(dataclasses.replace(config, **overrides))


@pytest.fixture
def planner(model_server: ScriptedModelServer) -> OpenAIPlanner:
    """The workers of these tests plan with the scripted model."""
    return model_planner(model_server)
