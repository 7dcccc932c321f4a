"""The programs plugin: each program's workflow and the activities of its tools, registered from the program
declarations (:mod:`workflows.programs`) and bound to the hosts a worker gives once.

A tool is declared by its frozen activity type (:class:`tools.registry.ToolSpec`); a host is any object whose
``@activity.defn`` methods run tools (``CareTools``, ``PriorAuthTools``, the planners, the ledger). The plugin
binds each declared tool to the host method registered under that activity type and refuses to build a worker
when a declared tool has no host, two hosts offer the same activity, or a host's input or result type is not
the declared one — a deployment mistake stops the worker at start, before it polls. The worker itself keeps
processes, queues and metrics (``worker.py``), as in Temporal's own plugins (``SimplePlugin(activities=...)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from temporalio import activity
from temporalio.plugin import SimplePlugin

from runtime.errors import ConfigurationError
from tools.registry import ToolSpec
from workflows.programs import ALL_TOOLS, PROGRAMS, Program

__all__ = ["ProgramsPlugin", "bind_activities", "offered_activities"]

PLUGIN_NAME = "careloom.ProgramsPlugin"


def offered_activities(hosts: Iterable[object]) -> dict[str, Callable[..., Any]]:
    """Activity type -> the bound method of the host that runs it."""
    offered: dict[str, Callable[..., Any]] = {}
    for host in hosts:
        for name in dir(type(host)):
            if name.startswith("_"):
                continue
            method = getattr(host, name)
            definition = activity._Definition.from_callable(method) if callable(method) else None  # noqa: SLF001
            if definition is None or definition.name is None:
                continue
            if definition.name in offered:
                raise ConfigurationError(f"two hosts given to the worker run activity {definition.name!r} "
                                         f"({type(host).__name__} and another): give each host once")
            offered[definition.name] = method
    return offered


def bind_activities(hosts: Iterable[object], tools: Sequence[ToolSpec]) -> list[Callable[..., Any]]:
    """The host method of every declared tool, in declaration order; ConfigurationError naming what is missing
    or does not match."""
    offered = offered_activities(hosts)
    bound = []
    for tool in tools:
        method = offered.get(tool.name)
        if method is None:
            raise ConfigurationError(f"no host given to the worker runs activity {tool.name!r} ({tool.kind} tool); "
                                     f"hosts offer: {', '.join(sorted(offered)) or 'nothing'}")
        definition = activity._Definition.must_from_callable(method)  # noqa: SLF001 (the SDK's own reader)
        declared = (tool.input_type, tool.result_type)
        hosted = (definition.arg_types[0] if definition.arg_types else None, definition.ret_type)
        if hosted != declared:
            raise ConfigurationError(f"activity {tool.name!r}: the host takes {hosted[0]} and returns {hosted[1]}, "
                                     f"the declaration says {declared[0]} -> {declared[1]}")
        bound.append(method)
    return bound


class ProgramsPlugin(SimplePlugin):
    """Registers the programs' workflows and the activities of their tools on a worker.

    ``ProgramsPlugin(hosts)``: every program's workflow and every declared tool (the main task queue).
    ``ProgramsPlugin(hosts, tools=..., workflows=False)``: only these tools, no workflow (a rate-limited
    queue's worker: the planners, or member messages)."""

    def __init__(self, hosts: Sequence[object], *, tools: Sequence[ToolSpec] = ALL_TOOLS,
                 programs: Sequence[Program] = PROGRAMS, workflows: bool = True) -> None:
        self.tools = tuple(tools)
        super().__init__(PLUGIN_NAME, activities=bind_activities(hosts, self.tools),
                         workflows=[p.workflow for p in programs] if workflows else None)
