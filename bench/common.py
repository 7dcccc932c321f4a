"""What the benchmarks share: a throwaway embedded stack."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from temporalio.client import Client

from runtime.settings import Settings
from runtime.stack import Stack, running_stack
from tests.net import free_port

__all__ = ["history_size", "scratch_stack"]


@asynccontextmanager
async def scratch_stack() -> AsyncIterator[tuple[Settings, Stack]]:
    """An embedded dev server and records store in a fresh folder (free ports, no Web UI, one tool attempt),
    removed afterwards. Each bench starts its own workers."""
    state = Path(tempfile.mkdtemp(prefix="careloom-bench-"))
    settings = Settings(state_dir=state, embedded_port=free_port(), embedded_ui_port=free_port(), embedded_ui=False,
                        tool_attempts=1, _env_file=None)
    try:
        async with running_stack(settings, with_worker=False) as stack:
            yield settings, stack
    finally:
        shutil.rmtree(state, ignore_errors=True)


async def history_size(client: Client, workflow_ids: list[str]) -> tuple[float, float]:
    """Mean events and bytes per history over these workflows."""
    events = size = 0
    for wid in workflow_ids:
        history = await client.get_workflow_handle(wid).fetch_history()
        events += len(history.events)
        size += sum(e.ByteSize() for e in history.events)
    return events / len(workflow_ids), size / len(workflow_ids)
