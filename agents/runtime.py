"""What a program's agent graph needs from its host, the Temporal workflow.

Graph nodes never touch the world directly: they call an :class:`AgentRuntime`
(``workflows.agent_run.AgentRun``), which runs tools as activities, opens
approvals in the run's approval book and publishes the run's status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel

from guardrails.actions import ProposedAction
from guardrails.approvals import PendingApproval
from runtime.errors import ToolFailure
from tools.registry import ToolSpec

__all__ = ["AgentRuntime", "ToolFailure", "runtime_of"]




class AgentRuntime(Protocol):
    """The host of a graph invocation."""

    def now(self) -> datetime: ...

    async def call_tool(self, tool: ToolSpec, data: BaseModel) -> Any: ...

    def request_approvals(self, items: list[PendingApproval]) -> None: ...

    def executed_automatically(self, action: ProposedAction) -> None:
        """The action was executed with no human approval (the runtime may sample it for quality review)."""
        ...

    def publish(self, state: Any, status: str) -> None: ...

    def idempotency_key(self, action_id: str) -> str:
        """The write's idempotency key: this run and action (a restarted run writes its own resources)."""
        ...


def runtime_of(config: RunnableConfig) -> Any:
    """The runtime a graph invocation was started with (``config["configurable"]["runtime"]``)."""
    return config["configurable"]["runtime"]
