"""docs/architecture.md shows the agent graphs as they are: each committed Mermaid snapshot (itself compared with
the compiled graph by tests/agents/test_graph_shapes.py) appears in the page word for word."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["outreach_graph", "prior_auth_graph"])
def test_the_architecture_page_shows_the_graph_snapshot(name: str) -> None:
    snapshot = (ROOT / "tests" / "agents" / "snapshots" / f"{name}.mmd").read_text()
    page = (ROOT / "docs" / "architecture.md").read_text()
    assert f"```mermaid\n{snapshot}```" in page, (
        f"docs/architecture.md does not show tests/agents/snapshots/{name}.mmd; paste the snapshot into its "
        "mermaid block")
