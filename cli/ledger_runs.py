"""`careloom ledger verify` (histories part) and `careloom ledger reconcile`: the ledger against Temporal.

Reads every careloom run (optionally only those started since a date) from Temporal, decodes its history
and cross-checks it with :mod:`history.ledger_check`. Separate from the chain check so the chain can be
verified with the database alone (``--chain-only``).
"""

from __future__ import annotations

import asyncio
import re
from datetime import date

from history.events import RunRecord, read_run
from history.files import careloom_query
from runtime.data_converter import codec_for
from runtime.settings import Settings
from runtime.temporal_client import connect

__all__ = ["run_records"]

_WORKFLOW_ID = re.compile(r"[A-Za-z0-9._-]{1,200}")


async def _records(settings: Settings, since: date | None, workflow_id: str | None) -> list[RunRecord]:
    client = await connect(settings)
    clauses = [f"StartTime >= '{since.isoformat()}T00:00:00Z'" if since else "StartTime > '1970-01-01T00:00:00Z'"]
    if workflow_id is not None:
        clauses.append(f"WorkflowId = '{workflow_id}'")
    query = careloom_query(" AND ".join(clauses))
    codec = codec_for(settings)
    records = []
    async for found in client.list_workflows(query):
        history = await client.get_workflow_handle(found.id, run_id=found.run_id).fetch_history()
        records.append(read_run(history, codec))
    return records


def run_records(settings: Settings, since: date | None = None, workflow_id: str | None = None) -> list[RunRecord]:
    """Every careloom run's history (since ``since``; of one workflow id), decoded; raises what connect raises
    when Temporal is down."""
    if workflow_id is not None and not _WORKFLOW_ID.fullmatch(workflow_id):
        raise ValueError(f"{workflow_id!r} is not a careloom workflow id (letters, digits, '-', '_', '.')")
    return asyncio.run(_records(settings, since, workflow_id))
