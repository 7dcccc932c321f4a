"""Replay histories against the current workflow code, in parallel worker processes.

Each history is ``ok``, ``nondeterministic`` (with the first diverging event
and a hint) or ``error``. Replays use :class:`runtime.plugin.CareloomPlugin`
like the worker (data converter, failure types and, when sandboxed, the
passthrough modules); by default without the sandbox.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Literal

from pydantic import BaseModel
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from history.files import HistoryFileError, load_history

__all__ = ["ReplayOutcome", "replay_files", "replay_histories"]

HINT = ("the workflow code changed in a way that changes its commands for this history: gate the change with "
        "workflow.patched() (docs/runbook.md, 'Changing workflow code safely') or let old runs finish first")


class ReplayOutcome(BaseModel):
    source: str = ""
    workflow_id: str
    status: Literal["ok", "nondeterministic", "error"]
    detail: str | None = None
    first_diverging_event: int | None = None
    hint: str | None = None


def _event_id(message: str) -> int | None:
    """The diverging event's id in the core's message ("... HistoryEvent(id: 5, ...)", "event_id 5", "event 5")."""
    found = re.search(r"event(?:\(id|_id| id)?[ =:#]*(\d+)", message, re.IGNORECASE)
    return int(found.group(1)) if found else None


async def replay_histories(histories: list[tuple[str, WorkflowHistory]], *, sandbox: bool = False,
                           workflows: Sequence[type] | None = None) -> list[ReplayOutcome]:
    """Replay (source, history) pairs through one replayer in this process; one outcome each, in order.

    Without ``sandbox`` the unsandboxed runner is used: replay checks that the
    code produces the same commands, which the sandbox does not change, and it
    is about twice as fast (the worker always runs workflows sandboxed).
    ``workflows`` defaults to the worker's; the replay benchmark passes its
    bare baseline workflow.
    """
    from runtime.plugin import CareloomPlugin
    from runtime.settings import Settings
    from worker import WORKFLOWS, warm_up_workflows

    warm_up_workflows()

    # The plugin adds the passthrough modules to the sandboxed runner and leaves the unsandboxed one
    # alone. Its converter is the worker's: with payload keys configured, encrypted histories decrypt.
    runner = SandboxedWorkflowRunner() if sandbox else UnsandboxedWorkflowRunner()
    replayer = Replayer(workflows=list(workflows or WORKFLOWS), workflow_runner=runner,
                        plugins=[CareloomPlugin(Settings())], build_id="careloom-replay")

    async def feed() -> AsyncIterator[WorkflowHistory]:
        for _, history in histories:
            yield history

    sources = {id(history): source for source, history in histories}
    outcomes: list[ReplayOutcome] = []
    async with replayer.workflow_replay_iterator(feed()) as results:
        async for result in results:
            history, failure = result.history, result.replay_failure
            source = sources[id(history)]
            if failure is None:
                outcomes.append(ReplayOutcome(source=source, workflow_id=history.workflow_id, status="ok"))
            elif isinstance(failure, NondeterminismError):
                message = str(failure)
                outcomes.append(ReplayOutcome(
                    source=source, workflow_id=history.workflow_id, status="nondeterministic", detail=message,
                    first_diverging_event=_event_id(message), hint=HINT))
            else:
                outcomes.append(ReplayOutcome(source=source, workflow_id=history.workflow_id, status="error",
                                              detail=f"{type(failure).__name__}: {failure}"))
    return outcomes


async def _replay_concurrently(loaded: list[tuple[str, WorkflowHistory]], sandbox: bool,
                               streams: int = 4) -> list[ReplayOutcome]:
    """Several replayers at once: each waits on the core between activations, so they overlap."""
    chunks = [loaded[i::streams] for i in range(streams) if loaded[i::streams]]
    return [o for batch in await asyncio.gather(*(replay_histories(c, sandbox=sandbox) for c in chunks))
            for o in batch]


def _replay_chunk(paths: list[str], sandbox: bool = False) -> list[dict]:
    """Worker-process entry point: load and replay a chunk of files."""
    loaded: list[tuple[str, WorkflowHistory]] = []
    outcomes: list[ReplayOutcome] = []
    for path in paths:
        try:
            item = load_history(Path(path))
            loaded.append((path, item.history))
        except HistoryFileError as err:
            outcomes.append(ReplayOutcome(source=path, workflow_id=Path(path).stem, status="error", detail=str(err)))
    if loaded:
        outcomes.extend(asyncio.run(_replay_concurrently(loaded, sandbox)))
    return [o.model_dump() for o in outcomes]


def replay_files(paths: list[Path], *, processes: int = 2, sandbox: bool = False) -> list[ReplayOutcome]:
    """Replay files across ``processes`` worker processes (1 = in this process); order follows ``paths``."""
    names = [str(p) for p in paths]
    if processes <= 1 or len(names) < 2:
        results = [ReplayOutcome(**o) for o in _replay_chunk(names, sandbox)]
    else:
        chunks = [names[i::processes] for i in range(min(processes, len(names)))]
        # spawn, not fork: a forked child inherits a Temporal runtime it may not use (PID check in the SDK).
        with ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = [ReplayOutcome(**o) for chunk in pool.map(_replay_chunk, chunks, [sandbox] * len(chunks))
                       for o in chunk]
    order = {name: i for i, name in enumerate(names)}
    return sorted(results, key=lambda o: order.get(o.source, 0))
