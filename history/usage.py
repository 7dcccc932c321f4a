"""Model usage and cost from recorded histories: what planning cost, per model and prompt version.

Built from the ``PlannerOutput`` every planner step records (model, prompt
version, requests, tokens, estimated cost), so it works on exported files with
no database, like the audit.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from history.events import RunRecord
from workflows.programs import PLANNER_ACTIVITIES

__all__ = ["UsageLine", "UsageReport", "usage_report"]


class UsageLine(BaseModel):
    planner: str
    model: str | None
    prompt_version: str | None
    runs: int = Field(default=0, description="Runs that planned with it (a run reviewed again after a pend "
                                             "plans once per round: counted once here).")
    steps: int = Field(default=0, description="Planner steps (one per run, or per review round).")
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated_cost_usd: float = 0.0
    repaired: int = 0

    @property
    def tokens_per_run(self) -> float:
        return (self.prompt_tokens + self.completion_tokens) / self.runs if self.runs else 0.0


class UsageReport(BaseModel):
    runs: int
    lines: list[UsageLine]
    failed_planning_attempts: int
    fallbacks: int

    @property
    def estimated_cost_usd(self) -> float:
        return round(sum(line.estimated_cost_usd for line in self.lines), 6)


def usage_report(records: list[RunRecord]) -> UsageReport:
    """Totals per (planner, model, prompt version) over the runs' planner steps."""
    lines: dict[tuple[str, str | None, str | None], UsageLine] = {}
    failed = fallbacks = 0
    for record in records:
        counted: set[tuple[str, str | None, str | None]] = set()
        for call in record.calls:
            if call.name not in PLANNER_ACTIVITIES:
                continue
            if call.failure is not None or call.result is None:
                failed += 1
                continue
            out = call.result
            fallbacks += "fallback" in out.planner
            key = (out.planner, out.model, out.prompt_version)
            line = lines.setdefault(key, UsageLine(planner=out.planner, model=out.model,
                                                   prompt_version=out.prompt_version))
            line.steps += 1
            if key not in counted:
                counted.add(key)
                line.runs += 1
            if out.usage is not None:
                line.requests += out.usage.requests
                line.prompt_tokens += out.usage.prompt_tokens
                line.completion_tokens += out.usage.completion_tokens
                line.estimated_cost_usd = round(line.estimated_cost_usd + out.usage.estimated_cost_usd, 6)
                line.repaired += out.usage.repaired
    return UsageReport(runs=len(records), lines=sorted(lines.values(), key=lambda line: (-line.runs, line.planner)),
                       failed_planning_attempts=failed, fallbacks=fallbacks)
