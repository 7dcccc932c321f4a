"""The API's /metrics over real HTTP (uvicorn): Prometheus text with careloom's metrics."""

from __future__ import annotations

import httpx


async def test_the_api_serves_prometheus_metrics(api_url: str) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{api_url}/metrics")
    assert 200 == answer.status_code
    assert answer.headers["content-type"].startswith("text/plain; version=")
    assert "# TYPE careloom_runs_started_total counter" in answer.text
    assert "# TYPE careloom_adt_messages_total counter" in answer.text
