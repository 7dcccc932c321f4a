"""A readable audit timeline of one run of any program, built from its history alone.

Trigger; every tool call with an argument and result summary; the planner's
proposals with planner/model/prompt version and confidence signals; every
guardrail verdict with reasons and policy; approval requests, reminders,
escalations and decisions with approver, role, time and digest; the outcome.
Cross-checked against the decision ledger when a database is available.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from history.events import RunRecord
from store.ledger import DecisionLedger
from store.ledger_entries import LedgerEntry
from tools.registry import (
    CHECK_ELIGIBILITY,
    EVALUATE_GAPS,
    GET_CLINICAL_CONTEXT,
    LOOKUP_MEMBER,
    REVIEW_EVIDENCE,
    SCORE_READMISSION_RISK,
)
from workflows.approvals import LEDGER_APPEND
from workflows.programs import ALL_TOOLS
from workflows.programs import CARE_GAPS, OUTREACH, PLANNER_ACTIVITIES

_WRITES = {t.name for t in ALL_TOOLS if t.kind == "write"}

__all__ = ["AuditEntry", "AuditReport", "audit", "ledger_mismatches"]


class AuditEntry(BaseModel):
    at: datetime | None
    kind: str
    summary: str
    details: dict[str, Any] = {}


class AuditReport(BaseModel):
    workflow_id: str
    policy_id: str
    outcome: str
    entries: list[AuditEntry]
    ledger_checked: bool = False
    ledger_mismatches: list[str] = []


def _summary(name: str, value: Any) -> str:  # noqa: ANN401
    if value is None:
        return "-"
    if name == LOOKUP_MEMBER.name:
        return (f"{value.pseudonym}, age {value.age_years}, channels {','.join(value.channels) or 'none'}, "
                f"tz {value.time_zone}, opted_out={value.opted_out}, deceased={value.deceased}")
    if name == CHECK_ELIGIBILITY.name:
        return f"{value.outcome}, inforce={value.inforce}, plan {value.plan_type}" + (
            f" ({value.reason})" if value.reason else "")
    if name == GET_CLINICAL_CONTEXT.name:
        stay = value.stay
        return (f"LOS {stay.length_of_stay_days} d, acute={stay.acute_admission}, disposition "
                f"{stay.discharge_disposition}, {len(value.condition_codes)} conditions, {value.ed_visits_6mo} ED visits")
    if name == SCORE_READMISSION_RISK.name:
        text = f"LACE {value.lace}" if value.status == "scored" else f"insufficient_data: {', '.join(value.missing)}"
        model = getattr(value, "model", None)  # histories from before learned models carry none
        if model is not None:
            text += f"; model {model.words()}"
            if model.contributions:
                text += " — " + "; ".join(c.words for c in model.contributions)
        elif getattr(value, "model_reason", None):
            text += f"; model: {value.model_reason}"
        shadow = getattr(value, "shadow", None)
        if shadow is not None:
            text += f"; shadow {shadow.name} v{shadow.version} (sha256 {shadow.digest[:12]}…): {shadow.probability:.2f}"
        return text
    if name == EVALUATE_GAPS.name:
        return (f"{len(value.open_gaps)} open gap(s) of {len(value.gaps)} measure(s): "
                f"{', '.join(g.measure_id for g in value.open_gaps) or 'none'} ({value.measures_version})")
    if name == REVIEW_EVIDENCE.name:
        criteria = [c for s in value.services for c in s.criteria]
        return (f"{sum(c.status == 'met' for c in criteria)}/{len(criteria)} criteria met with citations, "
                f"{value.notes_read} note(s), {value.criteria_version}")
    if name in PLANNER_ACTIVITIES:
        usage = value.usage
        cost = (f"; {usage.requests} model request(s), {usage.prompt_tokens}+{usage.completion_tokens} tokens, "
                f"~${usage.estimated_cost_usd:.4f}" + (", repaired" if usage.repaired else "")) if usage else ""
        return f"{value.planner}: {len(value.proposals)} proposal(s){cost}"
    if name in _WRITES:
        return f"{value.reference} ({'created' if value.created else 'already existed'})"
    if name == LEDGER_APPEND.name:
        return f"{value} entr{'y' if value == 1 else 'ies'} appended"
    return str(value)[:120]


def _args(name: str, value: Any) -> str:  # noqa: ANN401
    if name in PLANNER_ACTIVITIES:
        return "facts of the run"
    if name == LEDGER_APPEND.name:
        return ", ".join(f"{e.approval_id}:{e.event}" for e in value.entries)
    if hasattr(value, "arguments"):
        return f"{value.arguments.tool} key={value.idempotency_key}"
    if hasattr(value, "model_dump"):
        return ", ".join(f"{k}={v}" for k, v in value.model_dump(mode="json").items() if not isinstance(v, list))
    return str(value)[:120]


def _trigger(record: RunRecord) -> str:
    data = record.input
    if record.program is OUTREACH:
        return (f"discharge {data.encounter_id} of member {data.member_id}, started by {data.initiated_by}")
    if record.program is CARE_GAPS:
        return (f"care gaps of member {data.member_id} for {data.period_start} to {data.period_end} "
                f"({', '.join(data.measure_ids)}), started by {data.initiated_by}")
    sub = data.submission
    appeal = getattr(data, "appeal", None)
    if appeal is not None:
        return (f"reconsideration of {appeal.claim_response} (Claim/{sub.claim_id}, "
                f"{'expedited' if appeal.expedited else 'standard'}), filed by {appeal.filed_by} for "
                f"{appeal.requester} on {appeal.filed_at:%Y-%m-%d %H:%M} UTC; excluded reviewers: "
                f"{', '.join(appeal.reviewers) or 'none named'}")
    return (f"prior-authorization request Claim/{sub.claim_id} ({sub.priority}, "
            f"{', '.join(i.code for i in sub.items)}) of member {sub.member_id}, received "
            f"{sub.received_at:%Y-%m-%d %H:%M} UTC, submitted by {data.initiated_by}")


def audit(record: RunRecord, ledger: DecisionLedger | None = None) -> AuditReport:
    policy = record.input.policy
    entries = [AuditEntry(at=record.started_at, kind="trigger", summary=_trigger(record),
                          details={"policy_id": policy.policy_id, "program": record.program.name})]
    for call in record.calls:
        entries.append(AuditEntry(
            at=call.scheduled_at, kind="ledger" if call.name == LEDGER_APPEND.name else "tool",
            summary=f"{call.name}({_args(call.name, call.input)}) -> "
                    + (f"FAILED: {call.failure}" if call.failure else _summary(call.name, call.result))))
        model = getattr(call.result, "model", None) if call.name == SCORE_READMISSION_RISK.name else None
        if model is not None:
            entries.append(AuditEntry(
                at=call.finished_at, kind="risk_model",
                summary=f"readmission model {model.words()} (prioritises outreach, never a coverage decision)"
                        + (": " + "; ".join(c.words for c in model.contributions) if model.contributions else ""),
                details={"model": model.ref(), "alias": model.alias, "probability": model.probability,
                         "base_probability": model.base_probability,
                         "explanation": [c.model_dump() for c in model.contributions],
                         "shadow": call.result.shadow.ref() if call.result.shadow else None,
                         "shadow_probability": call.result.shadow.probability if call.result.shadow else None}))
        if call.name in PLANNER_ACTIVITIES and call.result is not None:
            for proposal in call.result.proposals:
                entries.append(AuditEntry(
                    at=call.finished_at, kind="proposal",
                    summary=f"{proposal.action_id}: {proposal.tool}, confidence {proposal.confidence:.2f} — "
                            f"{proposal.rationale}",
                    details={"planner": call.result.planner, "model": call.result.model,
                             "prompt_version": call.result.prompt_version, "digest": proposal.digest,
                             "signals": {s.name: s.value for s in proposal.signals}, "evidence": proposal.evidence,
                             "review_reasons": proposal.review_reasons,
                             "usage": call.result.usage.model_dump() if call.result.usage else None}))
        if call.name == LEDGER_APPEND.name:
            for e in call.input.entries:
                who = f"{e.actor} ({e.role})" if e.role else e.actor
                entries.append(AuditEntry(at=e.at, kind="approval",
                                          summary=f"{e.approval_id} {e.event} by {who} in {e.queue}, digest "
                                                  f"{e.digest[:12]}" + (f": {e.reason}" if e.reason else ""),
                                          details={"policy_id": e.policy_id,
                                                   **({"risk_model": e.risk_model} if e.risk_model else {})}))
    for decision in record.decisions:
        d = decision.decision
        entries.append(AuditEntry(at=decision.at, kind="decision",
                                  summary=f"{d.approval_id}: {d.decision} by {d.approver} ({d.role}), digest "
                                          f"{d.digest[:12]}" + (f", reason: {d.reason}" if d.reason else "")
                                          + (f" -> {decision.result.outcome}" if decision.result else "")))
    for answer in record.pend_answers:
        entries.append(AuditEntry(at=answer.received_at, kind="documentation",
                                  summary=f"pend answered: QuestionnaireResponse/{answer.questionnaire_response} "
                                          f"sent by {answer.submitted_by}; the request is reviewed again with it"))
    for at, seconds in record.timers:
        entries.append(AuditEntry(at=at, kind="timer", summary=f"durable timer {seconds:.0f} s (deferral or SLA clock)"))
    if record.result is not None:
        verdicts, source = record.result.verdicts, "recorded"
    else:
        verdicts = [v for _, v in record.planned_verdicts(record.input.policy)]
        source = "recomputed from the recorded facts and proposals"
    for v in verdicts:
        entries.append(AuditEntry(at=v.evaluated_at, kind="verdict",
                                  summary=f"{v.action_id}: {v.decision}"
                                          + (f" ({v.required_role})" if v.required_role else "")
                                          + f" — {'; '.join(v.reasons)}",
                                  details={"policy_id": v.policy_id, "source": source}))
    if record.result is not None:
        outcome = record.result.status
        for action in record.result.actions:
            entries.append(AuditEntry(at=record.closed_at, kind="outcome",
                                      summary=f"{action.action_id} {action.tool}: {action.status}"
                                              + (f" -> {action.reference}" if action.reference else "")
                                              + (f" ({action.reason})" if action.reason else "")
                                              + (f", approved by {action.approved_by}" if action.approved_by else "")))
    else:
        outcome = record.closed_as or "running"
        if record.failure:
            entries.append(AuditEntry(at=record.closed_at, kind="outcome", summary=f"{outcome}: {record.failure}"))
    entries.sort(key=lambda e: (e.at is None, e.at or datetime.min.replace(tzinfo=UTC)))
    report = AuditReport(workflow_id=record.workflow_id, policy_id=policy.policy_id, outcome=outcome, entries=entries)
    if ledger is not None:
        report.ledger_checked = True
        report.ledger_mismatches = ledger_mismatches(record.ledger_entries, [
            e for e in ledger.entries(record.workflow_id) if e.run_id in (None, record.run_id)])
    return report


_SET_BY_THE_LEDGER = {"verified", "unverified_reason"}
"""Fields the ledger activity adds when it appends (its verification of a decision entry)."""


def ledger_mismatches(in_history: list[LedgerEntry], in_ledger: list[LedgerEntry]) -> list[str]:
    """Differences between the entries the run appended and what the ledger holds for it."""
    stored = {e.event_id: e for e in in_ledger}
    problems = []
    for entry in in_history:
        found = stored.pop(entry.event_id, None)
        if found is None:
            problems.append(f"{entry.event_id} ({entry.approval_id} {entry.event}) is in the history but not in the "
                            "ledger")
        elif found.model_dump(exclude=_SET_BY_THE_LEDGER) != entry.model_dump(exclude=_SET_BY_THE_LEDGER):
            problems.append(f"{entry.event_id} ({entry.approval_id} {entry.event}) differs between history and ledger")
    problems.extend(f"{e.event_id} ({e.approval_id} {e.event}) is in the ledger but not in the history"
                    for e in stored.values())
    return problems
