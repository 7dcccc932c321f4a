"""Counterfactual guardrails: how would past cases have been routed under another policy?

Takes the facts and planner proposals recorded in each history and evaluates
them, deterministically and with no side effects or model calls, under the
policy the run used and under a candidate policy, at the time the run guarded
them. Reports per case old → new verdict and totals; an action that needed a
human under the old policy and would run without one under the new policy is
flagged loudly.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from guardrails.outreach_rules import service_effect
from history.events import RunRecord
from history.files import HistoryFileError
from workflows.programs import OUTREACH, Program

__all__ = ["CaseChange", "WhatIfReport", "load_policy", "what_if"]


class CaseChange(BaseModel):
    workflow_id: str
    action_id: str
    tool: str
    old: str
    new: str
    old_role: str | None = None
    new_role: str | None = None
    adverse: bool = False
    loses_human: bool = False


class WhatIfReport(BaseModel):
    program: str = Field(description="The program the candidate policy is for; other programs' runs are skipped.")
    other_programs_skipped: int = 0
    old_policies: list[str]
    new_policy: str
    cases: int
    actions: int
    changes: list[CaseChange]
    approvals_added: int
    approvals_removed: int
    automation_before: float
    automation_after: float
    runs_stopped_before: int
    runs_stopped_after: int
    human_removed: list[CaseChange]


def load_policy(path: Path, program: Program = OUTREACH) -> BaseModel:
    """The program's policy (GuardrailPolicy, PriorAuthPolicy) from JSON; unknown fields and bad values are
    errors naming the file."""
    try:
        return program.policy.model_validate_json(path.read_text())
    except OSError as err:
        raise HistoryFileError(f"{path}: cannot read the policy ({err.strerror})") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise HistoryFileError(f"{path}: invalid policy at {where}: {first['msg']}") from None


def what_if(records: list[RunRecord], new_policy: BaseModel, program: Program = OUTREACH) -> WhatIfReport:
    changes: list[CaseChange] = []
    actions = auto_before = auto_after = 0
    stopped_before = stopped_after = 0
    old_ids: set[str] = set()
    others = [r for r in records if r.program is not program]
    records = [r for r in records if r.program is program]
    stop = program.stop_check
    for record in records:
        old_policy = record.input.policy
        old_ids.add(old_policy.policy_id)
        facts = record.facts
        if facts is None:
            continue
        if stop is not None and stop(facts, old_policy) is not None:
            stopped_before += 1
        if stop is not None and stop(facts, new_policy) is not None:
            stopped_after += 1
        for (proposal, old), (_, new) in zip(record.planned_verdicts(old_policy), record.planned_verdicts(new_policy),
                                             strict=True):
            actions += 1
            auto_before += old.decision == "allow"
            auto_after += new.decision == "allow"
            if (old.decision, old.required_role) == (new.decision, new.required_role):
                continue
            change = CaseChange(
                workflow_id=record.workflow_id, action_id=proposal.action_id, tool=proposal.tool,
                old=old.decision, new=new.decision, old_role=old.required_role, new_role=new.required_role,
                adverse=service_effect(proposal) != "none",
                loses_human=old.decision == "require_approval" and new.decision == "allow")
            changes.append(change)
    return WhatIfReport(
        program=program.name, other_programs_skipped=len(others), old_policies=sorted(old_ids), new_policy=new_policy.policy_id, cases=len(records), actions=actions,
        changes=changes, approvals_added=sum(c.new == "require_approval" and c.old != "require_approval"
                                             for c in changes),
        approvals_removed=sum(c.old == "require_approval" and c.new != "require_approval" for c in changes),
        automation_before=auto_before / actions if actions else 0.0,
        automation_after=auto_after / actions if actions else 0.0,
        runs_stopped_before=stopped_before, runs_stopped_after=stopped_after,
        human_removed=[c for c in changes if c.loses_human],
    )
