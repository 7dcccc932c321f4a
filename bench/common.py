"""What the benchmarks share: a throwaway embedded stack."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import tempfile
import types
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from temporalio.client import Client

from runtime.settings import Settings
from tests.net import free_port
from worker import Stack, running_stack

__all__ = ["history_size", "module_at", "scratch_database", "scratch_stack"]

_ROOT = Path(__file__).resolve().parents[1]


def module_at(name: str, rev: str, path: str, rewrite: dict[str, str]) -> types.ModuleType:
    """A file of the repository at ``rev`` as a module of its own (imports rewritten to other such modules), so
    a bench runs the code before a change beside the code after it, in one process."""
    source = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=_ROOT, check=True, capture_output=True,
                            text=True).stdout
    for old, new in rewrite.items():
        source = source.replace(old, new)
    module = types.ModuleType(name)
    module.__file__ = f"<{rev}:{path}>"
    sys.modules[name] = module  # pydantic resolves the models' postponed annotations through sys.modules
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - the repo's own history
    return module


@contextmanager
def scratch_database(server_url: str | None) -> Iterator[str | None]:
    """A new, empty database on the PostgreSQL server ``server_url`` names (any database of it), dropped
    afterwards; None (the SQLite file in the state folder) when no URL is given."""
    if server_url is None or server_url.startswith("sqlite"):
        yield None
        return
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from store.database import open_engine

    name = f"careloom_bench_{secrets.token_hex(4)}"
    admin = open_engine(server_url, pool_size=1).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@asynccontextmanager
async def scratch_stack(database_url: str | None = None) -> AsyncIterator[tuple[Settings, Stack]]:
    """An embedded dev server and records store in a fresh folder (free ports, no Web UI, one tool attempt),
    removed afterwards; the store on a scratch PostgreSQL database when ``database_url`` names a server.
    Each bench starts its own workers."""
    state = Path(tempfile.mkdtemp(prefix="careloom-bench-"))
    try:
        with scratch_database(database_url) as url:
            settings = Settings(state_dir=state, embedded_port=free_port(), embedded_ui_port=free_port(),
                                embedded_ui=False, tool_attempts=1, database_url=url, _env_file=None)
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
