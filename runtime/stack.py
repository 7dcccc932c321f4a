"""The local stack: Temporal (embedded or configured), the records store and a worker.

``careloom up`` and ``careloom demo`` run it; with ``TEMPORAL_ADDRESS`` set
nothing is started except the worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from temporalio.client import Client

from runtime.settings import Settings
from runtime.state_dir import private_state_dir
from runtime.temporal_client import connect
from runtime.temporal_server import EmbeddedTemporalServer
from store.records import SqlCareRecordStore

__all__ = ["Stack", "running_stack"]


@dataclass
class Stack:
    client: Client
    store: SqlCareRecordStore
    server: EmbeddedTemporalServer | None

    @property
    def ui_url(self) -> str | None:
        return self.server.ui_url if self.server else None


@asynccontextmanager
async def running_stack(settings: Settings, *, with_worker: bool = True) -> AsyncIterator[Stack]:
    """Start what is needed, yield it, and stop it all in reverse order."""
    from worker import build_workers  # worker imports the workflows; keep CLI start-up light

    async with AsyncExitStack() as stack:
        private_state_dir(settings.state_dir)  # 0700; member data and histories live here
        server = None
        if settings.embedded:
            server = await stack.enter_async_context(EmbeddedTemporalServer(settings))
        client = await connect(settings)
        store = SqlCareRecordStore(settings.open_database())
        stack.callback(store.db.close)
        private_state_dir(settings.state_dir)  # a records database a process without careloom's umask just made
        if with_worker:
            # The rate-limited queues' workers too: runs started with queues from settings need their pollers.
            for worker in build_workers(client, settings, store):
                await stack.enter_async_context(worker)
        yield Stack(client=client, store=store, server=server)
