"""The shape of each program's agent graph, pinned by a Mermaid snapshot (langgraph ``libs/prebuilt`` style).

A node or edge added, removed or rewired changes the drawing and fails here, so a change of an agent's route is
a reviewed change of ``tests/agents/snapshots/*.mmd``, not a side effect. Refresh the snapshots after an intended
change with::

    CARELOOM_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/agents/test_graph_shapes.py -q

With that variable set the tests rewrite the files and pass (review the diff before committing). The structural
tests below read ``get_graph()`` directly, so the graph's essential routes are asserted even while a snapshot is
being refreshed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langgraph.graph import END, START

# The programs' own registry: the graph each program's workflow really runs, wherever its module moves to.
from workflows.programs import OUTREACH, PRIOR_AUTH

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE_VARIABLE = "CARELOOM_UPDATE_SNAPSHOTS"

GRAPHS: dict[str, Callable[[], Any]] = {"outreach_graph": OUTREACH.graph, "prior_auth_graph": PRIOR_AUTH.graph}


def _edges(name: str) -> set[tuple[str, str]]:
    return {(e.source, e.target) for e in GRAPHS[name]().get_graph().edges}


def _reachable(name: str, source: str) -> set[str]:
    edges = _edges(name)
    seen, frontier = {source}, [source]
    while frontier:
        node = frontier.pop()
        for start, target in edges:
            if start == node and target not in seen:
                seen.add(target)
                frontier.append(target)
    return seen


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graph_drawing_matches_its_snapshot(name: str) -> None:
    """The compiled graph's Mermaid drawing equals tests/agents/snapshots/<name>.mmd."""
    path = SNAPSHOTS / f"{name}.mmd"
    actual = GRAPHS[name]().get_graph().draw_mermaid()
    if os.environ.get(UPDATE_VARIABLE) == "1":
        path.write_text(actual, encoding="utf-8")
        return
    refresh = f"{UPDATE_VARIABLE}=1 .venv/bin/python -m pytest tests/agents/test_graph_shapes.py"
    if not path.exists():
        pytest.fail(f"no snapshot tests/agents/snapshots/{path.name}: create it with {refresh}")
    expected = path.read_text(encoding="utf-8")

    assert expected == actual, (
        f"the {name} changed shape. If the change is intended, refresh the snapshot with {refresh} and review "
        f"the diff of tests/agents/snapshots/{path.name}")


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_start_chooses_between_a_first_step_and_a_resume(name: str) -> None:
    """START routes to gather_facts (first step) or apply_decisions (resume with decisions), nowhere else."""
    assert {"gather_facts", "apply_decisions"} == {t for s, t in _edges(name) if s == START}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_every_step_goes_through_guard_before_execute(name: str) -> None:
    """execute has guard as its only predecessor: nothing reaches a write tool without the guardrails."""
    assert {"guard"} == {s for s, t in _edges(name) if t == "execute"}
    assert {("apply_decisions", "guard"), ("guard", "execute")} <= _edges(name)


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_execute_either_parks_or_records_the_outcome(name: str) -> None:
    """execute ends the invocation (parked) or records the outcome, which ends it: both reach END."""
    assert {("execute", END), ("execute", "record_outcome"), ("record_outcome", END)} <= _edges(name)
    assert END in _reachable(name, "execute")


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_no_route_leads_back_from_execute_to_planning(name: str) -> None:
    """A run plans once: from execute, no planner node (plan, recommend) nor gather_facts can be reached."""
    assert set() == _reachable(name, "execute") & {"gather_facts", "plan", "recommend"}


def test_outreach_plans_after_gathering_or_stops_at_once() -> None:
    """Outreach: gather_facts goes to plan, or straight to record_outcome for a run-level stop (ineligible)."""
    assert {"plan", "record_outcome"} == {t for s, t in _edges("outreach_graph") if s == "gather_facts"}
    assert ("plan", "guard") in _edges("outreach_graph")


def test_prior_auth_always_recommends_after_gathering() -> None:
    """Prior auth has no run-level stop: gather_facts always goes to recommend, then to guard."""
    assert {"recommend"} == {t for s, t in _edges("prior_auth_graph") if s == "gather_facts"}
    assert ("recommend", "guard") in _edges("prior_auth_graph")
