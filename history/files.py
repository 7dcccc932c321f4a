"""Reading and writing exported histories (the JSON of `temporal workflow show --output json`).

A file is named ``<workflow id>.json``; the workflow id is not inside the
JSON, so the name carries it. Bad files are reported by name, never fatal for
the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from history.history_json import NotFastPath, history_from_dict
from runtime.errors import CareloomError

__all__ = ["HistoryFileError", "LoadedHistory", "history_files", "load_history", "careloom_query", "workflow_type_of",
           "write_history"]

OUTREACH_TYPE = "MemberOutreachWorkflow"


def _careloom_types() -> frozenset[str]:
    from workflows.programs import WORKFLOW_TYPES

    return WORKFLOW_TYPES


def careloom_query(query: str) -> str:
    """A visibility query narrowed to the runs of careloom's programs (every program, not only outreach)."""
    types = ", ".join(f'"{t}"' for t in sorted(_careloom_types()))
    return f"WorkflowType IN ({types}) AND ({query})"


class HistoryFileError(CareloomError):
    """A history file cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class LoadedHistory:
    path: Path
    history: WorkflowHistory


def write_history(folder: Path, history: WorkflowHistory) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{history.workflow_id}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(history.to_json())
    tmp.replace(path)
    return path


def history_files(paths: Iterable[Path]) -> list[Path]:
    """Expand folders to their *.json files; refuse an empty selection with a clear error."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.glob("*.json")))
        elif path.exists():
            found.append(path)
        else:
            raise HistoryFileError(f"{path} does not exist; pass exported history files or a folder of them")
    if not found:
        raise HistoryFileError(f"no *.json history files in {', '.join(str(p) for p in paths)}; "
                               "export some with `careloom history export`")
    return found


def workflow_type_of(history: WorkflowHistory) -> str | None:
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            return event.workflow_execution_started_event_attributes.workflow_type.name
    return None


def load_history(path: Path, *, expected_type: str | None = "careloom") -> LoadedHistory:
    """Parse one exported file; HistoryFileError for corrupt, truncated or foreign histories.

    ``expected_type``: a workflow type, ``"careloom"`` (any careloom program's, the default) or None (any).
    """
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise HistoryFileError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); the file is corrupt "
                               "or truncated, export it again") from None
    except OSError as err:
        raise HistoryFileError(f"{path}: cannot read it ({err.strerror})") from None
    try:
        history = WorkflowHistory(path.stem, history_from_dict(raw).events)
    except NotFastPath:  # something only the SDK's general (slower) parser handles, or an error it names
        try:
            history = WorkflowHistory.from_json(path.stem, raw)
        except Exception as err:  # noqa: BLE001 - protobuf parse errors have many types
            raise HistoryFileError(f"{path}: not a Temporal history ({err}); expected the JSON of "
                                   "`temporal workflow show --output json`") from None
    if not history.events:
        raise HistoryFileError(f"{path}: the history has no events")
    found = workflow_type_of(history)
    wanted = _careloom_types() if expected_type == "careloom" else {expected_type} if expected_type else None
    if wanted is not None and found not in wanted:
        raise HistoryFileError(f"{path}: a {found or 'unknown'} history, not {' or '.join(sorted(wanted))}; "
                               "careloom only replays and audits its own workflows")
    return LoadedHistory(path=path, history=history)
