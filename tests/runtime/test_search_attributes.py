"""careloom's search attributes exist wherever its runs go: the embedded server registers any its database lacks."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from runtime.search_attributes import ALL_KEYS
from runtime.settings import Settings
from runtime.temporal_server import EmbeddedTemporalServer, temporal_binary
from tests.net import free_port


@pytest.mark.slow
async def test_an_older_state_folder_gets_the_keys_added_since(tmp_path: Path) -> None:
    """A server database made without careloom's keys (an older careloom's state folder: `start-dev` registers
    keys only when it creates the database) has every key once the embedded server has started; before, a new
    run's upsert of a missing key failed its workflow task for ever."""
    port = free_port()
    old = subprocess.Popen([str(temporal_binary()), "server", "start-dev", "--db-filename", str(tmp_path / "temporal.db"),
                            "--ip", "127.0.0.1", "--port", str(port), "--headless", "--log-level", "error",
                            "--search-attribute", "CareloomStatus=Keyword"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(100):
            try:
                await Client.connect(f"127.0.0.1:{port}")
                break
            except RuntimeError:
                time.sleep(0.2)
    finally:
        old.send_signal(signal.SIGTERM)
        old.wait(timeout=30)
    settings = Settings(state_dir=tmp_path, embedded_port=port, embedded_ui=False, _env_file=None)
    async with EmbeddedTemporalServer(settings) as server:
        client = await Client.connect(server.address)
        known = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace="default"))
    assert {k.name for k in ALL_KEYS} <= set(known.custom_attributes)
    assert "CareloomTcmDue" in known.custom_attributes
