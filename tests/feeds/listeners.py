"""A real ADT listener for a test: on a free port, starting runs on the test's worker; its runs terminated after."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError

from feeds.adt_listener import serve_adt
from runtime.settings import Settings
from store.sql_records import SqlCareRecordStore

__all__ = ["running_listener"]


@contextlib.asynccontextmanager
async def running_listener(client: Client, settings: Settings, store: SqlCareRecordStore, task_queue: str,
                           **updates: Any) -> AsyncIterator[tuple[str, int, Settings]]:  # noqa: ANN401
    """(host, port, the listener's settings): ``settings`` on ``task_queue`` with ``updates``."""
    ours = settings.model_copy(update={"task_queue": task_queue, **updates})
    server = await serve_adt(ours, client, store, host="127.0.0.1", port=0)
    host, port = server.sockets[0].getsockname()[:2]
    try:
        yield host, port, ours
    finally:
        server.close()
        await server.wait_closed()
        async for execution in client.list_workflows(f"TaskQueue = '{task_queue}' AND ExecutionStatus = 'Running'"):
            with contextlib.suppress(RPCError):
                await client.get_workflow_handle(execution.id).terminate("test finished")
