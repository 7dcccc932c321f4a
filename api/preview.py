"""A readable preview of the FHIR resource a pending action would write (the write tool's own preview)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agents.approvals import PendingApproval
from tools.registry import write_tool_for

__all__ = ["preview_resources"]


def preview_resources(item: PendingApproval, now: datetime | None = None) -> list[dict[str, Any]]:
    """The resources the action would write (CarePlan with its Goals, a Task, a Communication, ...)."""
    tool = write_tool_for(item.arguments)
    return [] if tool.preview is None else tool.preview(item, now or datetime.now(UTC))
