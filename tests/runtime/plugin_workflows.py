"""Workflows for tests/runtime/test_plugin.py. The sandbox imports this module afresh for each run.

Nothing here is imported through ``workflow.unsafe.imports_passed_through()``: what the workflow
sees of careloom's modules is the host's own module only if the worker's runner passes it through,
i.e. only if the plugin's passthrough list is in effect.
"""

from __future__ import annotations

from temporalio import workflow

import runtime.errors as passthrough_probe

PROBE_ATTRIBUTE = "PLUGIN_PROBE"
"""The test sets this on the host's ``runtime.errors``; a re-imported copy of the module lacks it."""


@workflow.defn(name="CareloomPluginProbe")
class PassthroughProbe:
    @workflow.run
    async def run(self) -> str | None:
        return getattr(passthrough_probe, PROBE_ATTRIBUTE, None)


@workflow.defn(name="CareloomFailsForGood")
class FailsForGood:
    """Raises a workflow failure type (``tool-failure``) or an ordinary bug (``bug``)."""

    @workflow.run
    async def run(self, kind: str) -> None:
        # Imported here, not at the top: the no-plugin control worker imports this module too, and in
        # its sandbox agents (and LangChain under it) would be re-imported.
        from agents.runtime import ToolFailure

        if kind == "tool-failure":
            raise ToolFailure("ToolUnavailable", "tools.lookup_member failed after retries")
        raise RuntimeError("a bug in workflow code")
