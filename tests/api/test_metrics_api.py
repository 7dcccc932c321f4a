"""The API's /metrics over real HTTP (uvicorn): Prometheus text with careloom's metrics."""

from __future__ import annotations

import httpx
from store.connect import configured_database


async def test_the_api_serves_prometheus_metrics(api_url: str) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{api_url}/metrics")
    assert 200 == answer.status_code
    assert answer.headers["content-type"].startswith("text/plain; version=")
    assert "# TYPE careloom_runs_started_total counter" in answer.text
    assert "# TYPE careloom_adt_messages_total counter" in answer.text


async def test_the_api_serves_the_ledger_figures_as_gauges_computed_at_scrape_time(api_url: str, settings) -> None:
    """A decision appended to the ledger shows in the next scrape: rates per action kind and role, quality findings."""
    import uuid
    from datetime import UTC, datetime

    from store.ledger import DecisionLedger
    from store.ledger_entries import LedgerEntry

    wf = f"outreach-metrics-{uuid.uuid4().hex[:8]}"
    common = {"workflow_id": wf, "at": datetime.now(UTC), "digest": "d" * 64, "policy_id": "p",
              "tool": "metrics_probe_tool"}
    DecisionLedger(configured_database(settings)).append([
        LedgerEntry(event_id=f"{wf}/1", approval_id="a1.1", event="requested", actor="system",
                    queue="care-coordination", **common),
        LedgerEntry(event_id=f"{wf}/2", approval_id="a1.1", event="rejected", actor="rn.kim", role="rn",
                    queue="care-coordination", reason="no", **common),
        LedgerEntry(event_id=f"{wf}/3", approval_id="a2", event="sampled", actor="system", queue="quality-review",
                    **common)])
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{api_url}/metrics")).text
    assert 'careloom_ledger_decision_rate{decision="rejected",tool="metrics_probe_tool"} 1.0' in text
    assert 'careloom_ledger_decisions{tool="metrics_probe_tool"} 1.0' in text
    assert 'careloom_quality_reviews{finding="pending",tool="metrics_probe_tool"} 1.0' in text
    assert "# TYPE careloom_ledger_decision_rate_by_role gauge" in text
