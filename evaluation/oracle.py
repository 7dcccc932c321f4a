"""What a case's run did, judged against what the case expects: one :class:`ActionResult` per proposed action.

The observed verdict class of an action is its *first* guardrail verdict (later ones re-judge an approved or
deferred action): allow → ``may_auto``, require_approval → ``must_require_approval`` (with the role asked
for), block → ``must_block``, defer → ``must_defer``. A ``must_require_approval`` expectation holds only
when the role asked for is at least the case's ``min_role``.

An expectation with ``outside_contact_hours`` switches to that verdict when the guardrails judged the action
outside the TCPA window (08:00-21:00 member-local) in ``contact_zone``, computed from the verdict's own time,
so a case means the same thing whenever the suite runs. Such an action is *off window* when any of its verdicts
let it go out, or deferred it to, a time outside that window in ``contact_zone`` (a member's zone taken for the
plan's: a Pacific member called at 05:00 local).

A case may start several runs (``data.start: import``) or none: their actions are judged together. A care-gap
closure case is judged on the same terms, plus the measures open when its run settled (``outcome.open_gaps``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
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
    off_window: bool = Field(default=False, description=(
        "A timed contact (its expectation names a contact_zone) that a verdict let go out, or deferred to, a "
        "time outside 08:00-21:00 in that zone."))
    excess: bool = Field(default=False, description="An action of a kind beyond the case's outcome.count.")


class CaseResult(BaseModel):
    id: str
    program: str
    title: str = ""
    tags: list[str] = Field(default_factory=list)
    trigger: str = Field(default="", description=(
        "What started the case's run(s) (evaluation.scenarios.trigger_of): outreach-start, import, adt, bundle, "
        "prior-auth, care-gap."))
    attributes: dict[str, str] = Field(default_factory=dict, description="Subgroups: age_band, sex, language, "
                                                                         "plan_type, dual.")
    workflow_id: str | None = None
    status: str | None = None
    planner: str | None = None
    lace: int | None = None
    determination: str | None = None
    open_gaps: list[str] | None = Field(default=None, description=(
        "care-gap-closure: the measure ids open at the run's last evaluation when it settled."))
    actions: list[ActionResult] = Field(default_factory=list)
    leaks: list[str] = Field(default_factory=list, description=(
        "Where text the case forbids (outcome.not_written) appeared: an approval item shown to a reviewer, or a "
        "record a run wrote (named by action and resource type, never quoting the text)."))
    downgraded: list[str] = Field(default_factory=list, description=(
        "TCM Tasks written below outcome.task_priority (named by action and the priority written)."))
    runs: int = Field(default=1, description="Runs the case's start made (data.start: import may make 0 or more).")
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


def _off_window(expectation: Expectation | None, verdicts: list[Any], executed: bool) -> bool:  # noqa: ANN401
    """Whether a verdict let a timed contact go out, or deferred it to, a time outside the window in its zone."""
    if expectation is None or expectation.contact_zone is None:
        return False
    zone = expectation.contact_zone
    for verdict in verdicts:
        if verdict.decision == "defer" and verdict.defer_until is not None:
            if _outside_contact_hours(verdict.defer_until, zone):
                return True
        elif (verdict.decision == "allow" and executed and verdict.evaluated_at is not None
              and _outside_contact_hours(verdict.evaluated_at, zone)):
            return True
    return False


def judge(case: Case, runs: Any | Sequence[Any], reviews: dict[str, str],  # noqa: ANN401
          ) -> tuple[list[ActionResult], list[str]]:
    """(per-action results, outcome problems) for the ``status`` query answers of a case's settled runs.

    ``runs`` is one answer or a list of them (a case may start several runs, or none). ``reviews`` maps action
    ids to the decision the harness gave (approve, edit, reject); with several runs, action ids are
    ``<run number>:<action id>``, as in the results.
    """
    statuses = list(runs) if isinstance(runs, (list, tuple)) else [runs]
    results: list[ActionResult] = []
    for number, status in enumerate(statuses, start=1):
        prefix = f"{number}:" if len(statuses) > 1 else ""
        results += _judge_run(case, status, reviews, prefix)
    allowed = dict(case.expect.outcome.count)
    seen: Counter[str] = Counter()
    for result in results:
        seen[result.kind] += 1
        if result.kind in allowed and seen[result.kind] > allowed[result.kind]:
            result.excess = True
    return results, _outcome_problems(case, statuses, results)


def _judge_run(case: Case, status: Any, reviews: dict[str, str], prefix: str) -> list[ActionResult]:  # noqa: ANN401
    first = {}
    every: dict[str, list[Any]] = {}
    for verdict in status.verdicts:
        first.setdefault(verdict.action_id, verdict)
        every.setdefault(verdict.action_id, []).append(verdict)
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
        action_id = prefix + action.action_id
        review = reviews.get(action_id)
        if review is not None:
            label = 1 if review == "approve" else 0
        elif automatic:
            label = 1 if case.review.get(action.tool, "approve") == "approve" else 0
        else:
            label = None
        off_window = _off_window(expectation, every.get(action.action_id, []), executed)
        results.append(ActionResult(
            action_id=action_id, kind=action.tool, expected=expected, observed=observed,
            required_role=required, min_role=expectation.min_role if expectation else None,
            correct=correct and not off_window, status=action.status, executed=executed, automatic=automatic,
            approved_by=action.approved_by, confidence=action.confidence, review=review,  # type: ignore[arg-type]
            label=label, off_window=off_window))
    return results


def _outcome_problems(case: Case, statuses: list[Any], results: list[ActionResult]) -> list[str]:  # noqa: ANN401
    want = case.expect.outcome
    problems = []
    if want.status and not statuses and "not_started" not in want.status:
        problems.append(f"no run started, expected {' or '.join(want.status)}")
    for status in statuses:
        if want.status and status.status not in want.status:
            problems.append(f"status {status.status}, expected {' or '.join(want.status)}")
        lace = getattr(status, "lace", None)
        if want.lace is not None and lace != want.lace:
            problems.append(f"LACE {lace}, expected {want.lace}")
        determination = getattr(status, "determination", None)
        if want.determination is not None and determination != want.determination:
            problems.append(f"determination {determination}, expected {want.determination}")
        open_gaps = sorted(getattr(status, "open_gaps", None) or [])
        if want.open_gaps is not None and open_gaps != sorted(want.open_gaps):
            problems.append(f"open gaps {open_gaps or 'none'}, expected {sorted(want.open_gaps) or 'none'}")
    proposed = sorted({r.kind for r in results})
    missing = sorted(set(case.expect.actions) - set(proposed))
    if missing:
        problems.append(f"{', '.join(missing)} expected but never proposed")
    if want.proposed is not None and proposed != sorted(set(want.proposed)):
        problems.append(f"proposed {proposed or 'nothing'}, expected {sorted(set(want.proposed)) or 'nothing'}")
    unexpected = sorted({r.kind for r in results if r.expected is None})
    if unexpected:
        problems.append(f"proposed {', '.join(unexpected)}, which the case has no expectation for")
    counts = Counter(r.kind for r in results)
    for kind, most in sorted(want.count.items()):
        if counts[kind] > most:
            problems.append(f"{counts[kind]} {kind} actions over {len(statuses)} runs, at most {most} expected")
    off = sorted({r.kind for r in results if r.off_window})
    if off:
        problems.append(f"{', '.join(off)} sent or deferred to a time outside 08:00-21:00 in the member's zone")
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
