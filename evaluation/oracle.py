"""What a case's run did, judged against what the case expects: one :class:`ActionResult` per proposed action.

The observed verdict class of an action is its *first* guardrail verdict (later ones re-judge an approved or
deferred action): allow → ``may_auto``, require_approval → ``must_require_approval`` (with the role asked
for), block → ``must_block``, defer → ``must_defer``. A ``must_require_approval`` expectation holds only
when the role asked for is at least the case's ``min_role``.

An expectation with ``outside_contact_hours`` switches to that verdict when the guardrails judged the action
outside the TCPA window (08:00-21:00 member-local) in ``contact_zone``, computed from the verdict's own time,
so a case means the same thing whenever the suite runs.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from evaluation.scenarios import Case, Expectation, Verdict
from guardrails.policy import ROLE_RANK

__all__ = ["ActionResult", "CaseResult", "attributes_of", "judge"]

OBSERVED: dict[str, Verdict] = {"allow": "may_auto", "require_approval": "must_require_approval",
                                "block": "must_block", "defer": "must_defer"}
CONTACT_START, CONTACT_END = time(8), time(21)


class ActionResult(BaseModel):
    action_id: str
    kind: str
    expected: Verdict | None = Field(description="None: the case expects no action of this kind.")
    observed: Verdict | None = Field(description="None: the action was never judged (the run stopped first).")
    required_role: str | None = None
    min_role: str | None = None
    correct: bool
    status: str = Field(description="The action's final status (executed, blocked, deferred, rejected, ...).")
    executed: bool
    automatic: bool = Field(description="Executed with no human approval.")
    approved_by: str | None = None
    confidence: float
    review: Literal["approve", "edit", "reject"] | None = Field(
        default=None, description="The scripted reviewer's decision, when the action reached one.")
    label: int | None = Field(default=None, description=(
        "Calibration label: 1 approved as proposed, 0 edited or rejected; for an automatic execution, the case's "
        "retrospective review label; None when no human judged it and it did not run."))


class CaseResult(BaseModel):
    id: str
    program: str
    title: str = ""
    tags: list[str] = Field(default_factory=list)
    attributes: dict[str, str] = Field(default_factory=dict, description="Subgroups: age_band, sex, language, "
                                                                         "plan_type, dual.")
    workflow_id: str | None = None
    status: str | None = None
    planner: str | None = None
    lace: int | None = None
    determination: str | None = None
    actions: list[ActionResult] = Field(default_factory=list)
    missing_kinds: list[str] = Field(default_factory=list, description="Action kinds the case expects that the "
                                                                      "run never proposed.")
    outcome_ok: bool = False
    problems: list[str] = Field(default_factory=list, description="Where the outcome differs from expect.outcome.")
    error: str | None = Field(default=None, description="The case could not run to the end (a harness or run error).")
    infrastructure_error: str | None = Field(default=None, description=(
        "Temporal did not answer the harness in time, retries included (evaluation/rpc_retry.py): the case was "
        "not judged; not a case error."))
    silent_failure: bool = Field(default=False, description=(
        "The run ended FAILED without a run_failed ledger entry naming a person's follow-up Task."))


def _outside_contact_hours(at: datetime, zone: str) -> bool:
    local = at.astimezone(ZoneInfo(zone)).time()
    return not (CONTACT_START <= local < CONTACT_END)


def expected_verdict(expectation: Expectation, evaluated_at: datetime | None) -> Verdict:
    if (expectation.outside_contact_hours is not None and expectation.contact_zone is not None
            and evaluated_at is not None and _outside_contact_hours(evaluated_at, expectation.contact_zone)):
        return expectation.outside_contact_hours
    return expectation.verdict


def judge(case: Case, status: Any, reviews: dict[str, str]) -> tuple[list[ActionResult], list[str]]:  # noqa: ANN401
    """(per-action results, outcome problems) for one settled run's ``status`` query answer.

    ``reviews`` maps action ids to the decision the harness gave (approve, edit, reject).
    """
    first = {}
    for verdict in status.verdicts:
        first.setdefault(verdict.action_id, verdict)
    results: list[ActionResult] = []
    for action in status.actions:
        verdict = first.get(action.action_id)
        expectation = case.expect.actions.get(action.tool)
        observed = OBSERVED[verdict.decision] if verdict is not None else None
        expected = expected_verdict(expectation, verdict.evaluated_at) if expectation and verdict else (
            expectation.verdict if expectation else None)
        required = verdict.required_role if verdict is not None else None
        correct = expected is not None and observed == expected
        if correct and expected == "must_require_approval" and expectation and expectation.min_role:
            correct = required is not None and ROLE_RANK[required] >= ROLE_RANK[expectation.min_role]
        executed = action.status == "executed"
        automatic = executed and action.approved_by is None
        review = reviews.get(action.action_id)
        if review is not None:
            label = 1 if review == "approve" else 0
        elif automatic:
            label = 1 if case.review.get(action.tool, "approve") == "approve" else 0
        else:
            label = None
        results.append(ActionResult(
            action_id=action.action_id, kind=action.tool, expected=expected, observed=observed,
            required_role=required, min_role=expectation.min_role if expectation else None, correct=correct,
            status=action.status, executed=executed, automatic=automatic, approved_by=action.approved_by,
            confidence=action.confidence, review=review, label=label))  # type: ignore[arg-type]
    return results, _outcome_problems(case, status, results)


def _outcome_problems(case: Case, status: Any, results: list[ActionResult]) -> list[str]:  # noqa: ANN401
    want = case.expect.outcome
    problems = []
    if want.status and status.status not in want.status:
        problems.append(f"status {status.status}, expected {' or '.join(want.status)}")
    lace = getattr(status, "lace", None)
    if want.lace is not None and lace != want.lace:
        problems.append(f"LACE {lace}, expected {want.lace}")
    determination = getattr(status, "determination", None)
    if want.determination is not None and determination != want.determination:
        problems.append(f"determination {determination}, expected {want.determination}")
    proposed = sorted({r.kind for r in results})
    missing = sorted(set(case.expect.actions) - set(proposed))
    if missing:
        problems.append(f"{', '.join(missing)} expected but never proposed")
    if want.proposed is not None and proposed != sorted(set(want.proposed)):
        problems.append(f"proposed {proposed or 'nothing'}, expected {sorted(set(want.proposed)) or 'nothing'}")
    unexpected = sorted({r.kind for r in results if r.expected is None})
    if unexpected:
        problems.append(f"proposed {', '.join(unexpected)}, which the case has no expectation for")
    return problems


def _age_band(birth: date, on: date) -> str:
    age = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return "<65" if age < 65 else "65-74" if age < 75 else "75-84" if age < 85 else "85+"


def attributes_of(resources: list[dict[str, Any]], on: date) -> dict[str, str]:
    """The member's subgroups from their Patient and Coverage (the same for generated and file cases)."""
    patient = next((r for r in resources if r.get("resourceType") == "Patient"), {})
    coverage = next((r for r in resources if r.get("resourceType") == "Coverage"), {})
    language = next((c["language"]["coding"][0]["code"] for c in patient.get("communication", [])
                     if c.get("preferred") and c.get("language", {}).get("coding")), "en")
    plan = (coverage.get("type") or {}).get("text") or "unknown"
    lowered = plan.lower()
    dual = "dual" in lowered or "medicare-medicaid" in lowered or "d-snp" in lowered
    birth = patient.get("birthDate")
    return {
        "age_band": _age_band(date.fromisoformat(birth), on) if birth else "unknown",
        "sex": patient.get("gender", "unknown"),
        "language": language.split("-")[0],
        "plan_type": plan.split(" (")[0],
        "dual": "dual" if dual else "not dual",
    }
