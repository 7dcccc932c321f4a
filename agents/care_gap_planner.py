"""The care-gap closure program's planner: the offline rules, and the activity that hosts them.

Rules (``offline-gap-rules/1``), from one member's gap review for a measurement period. No open gap → no
proposal (nothing to close is not an error). Otherwise three actions, with stable ids (the workflow prefixes
the round itself):

1. ``g1-reminder``: ONE reminder on the member's preferred channel (else the first channel they have; none →
   no message). The text is generic and PHI-free: it names no condition, test or measure, because an SMS or
   a letter may be read by someone else. It says only how many items are due. At most 160 characters.
2. ``g2-scheduling``: ONE ``gap-closure-scheduling`` Task for a care coordinator (``care-gaps/scheduling``,
   routine), due 14 days after the run's ``now`` but never after the end of the measurement period (a gap
   closed after the period does not close it for that period). It names the open measures by id.
3. ``g3-pcp``: ONE ``pcp-gap-notification`` Task (``care-gaps/pcp-outreach``, routine, same due time): tell
   the member's primary care practice which measures are open.

The planner has no clock: the workflow passes ``now`` (workflow time), so a replay plans the same.

Confidence of each action = Σ weight × value over four signals, as the outreach rules do: gap evidence
(0.50; 1.0 when every open gap was evaluated against records, see :func:`gap_signals`), reachability (0.25;
messages only: 1.0 with a channel and a known time zone, 0.6 with a defaulted zone), eligibility certainty
(0.15; 1.0 when the eligibility outcome is complete) and rule specificity (0.10; 0.9 for these rules).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field, field_validator
from temporalio import activity

from agents.planner import HEARTBEAT_TIMEOUT_SECONDS, PlannerOutput, calibrated, heartbeating
from guardrails.actions import ConfidenceSignal, ProposedAction
from guardrails.facts import CareGapFacts
from tools.care_gap_models import GapStatus
from tools.member import Channel, MemberProfile
from tools.outreach import SendOutreachArgs
from tools.registry import ToolSpec
from tools.tasks import CreateTaskArgs

if TYPE_CHECKING:  # workflows import this module (in the sandbox): the calibration code stays worker-side
    from agents.planner_calibration import PlannerCalibration

__all__ = ["GAP_REMINDER_MESSAGE", "PCP_QUEUE", "PLAN_CARE_GAPS", "PLAN_GAPS_ACTIVITY", "SCHEDULING_DAYS",
           "SCHEDULING_QUEUE", "GapPlannerActivity", "GapPlannerInput", "OfflineGapRules", "gap_signals",
           "reminder_channel", "reminder_message", "task_due"]

NAME = "offline-gap-rules/1"
PLAN_GAPS_ACTIVITY = "agents.plan_care_gaps"
SCHEDULING_QUEUE = "care-gaps/scheduling"
PCP_QUEUE = "care-gaps/pcp-outreach"
SCHEDULING_DAYS = 14
GAP_REMINDER_MESSAGE = ("Your health plan: you are due for recommended preventive care. "
                        "Please call your doctor's office to schedule a visit.")
_TASK_TEXT_MAX = 300  # CreateTaskArgs.description / .reason


class GapPlannerInput(BaseModel):
    workflow_id: str
    facts: CareGapFacts
    now: datetime = Field(description="Workflow time of the planning (UTC): due dates count from it.")
    round: int = Field(default=0, ge=0, description=(
        "0: the first plan; n: after the n-th re-evaluation found gaps still open."))

    @field_validator("now")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("now needs a UTC offset (pass workflow.now(), e.g. 2026-03-02T15:00:00Z)")
        return value


def reminder_channel(member: MemberProfile) -> Channel | None:
    """The member's preferred channel, else the first they have, else None (no message)."""
    if member.preferred_channel is not None:
        return member.preferred_channel
    return member.channels[0] if member.channels else None


def reminder_message(open_count: int) -> str:
    """The generic reminder: how many items are due, never which (no condition, test or measure)."""
    items = "1 item is" if open_count == 1 else f"{open_count} items are"
    return f"{GAP_REMINDER_MESSAGE} {items} due."


def task_due(now: datetime, facts: CareGapFacts) -> datetime:
    """``now`` + 14 days, capped at the last second (UTC) of the measurement period's last day."""
    period_end = datetime.combine(facts.review.period_end, time(23, 59, 59), tzinfo=UTC)
    return min(now.astimezone(UTC) + timedelta(days=SCHEDULING_DAYS), period_end)


def _id_list(ids: list[str], prefix: str) -> str:
    """``prefix`` + the ids, comma-separated; the tail folds into "+N more" when the text would not fit a Task."""
    for shown in range(len(ids), 0, -1):
        rest = len(ids) - shown
        text = prefix + ", ".join(ids[:shown]) + (f" +{rest} more" if rest else "")
        if len(text) <= _TASK_TEXT_MAX:
            return text
    return f"{prefix}{len(ids)} measures"[:_TASK_TEXT_MAX]


def gap_signals(facts: CareGapFacts, *, needs_contact: bool) -> list[ConfidenceSignal]:
    """How complete and certain the facts behind an action are, and how specific the rule (0.5/0.25/0.15/0.1)."""
    open_gaps = facts.review.open_gaps
    cited = sum(1 for g in open_gaps if g.evidence)
    member = facts.member
    channel = reminder_channel(member)
    if not needs_contact or (channel is not None and member.time_zone_known):
        reach, reach_note = 1.0, "channel and time zone known" if needs_contact else "no member contact"
    elif channel is not None:
        reach, reach_note = 0.6, f"time zone defaulted ({member.time_zone_basis})"
    else:
        reach, reach_note = 0.3, "no contact channel"
    # An open gap is the absence of a closing service: the engine needs records placing the member in the
    # denominator. A gap with no cited record at all rests on less (the member may be new to the plan).
    evidence = 1.0 if cited == len(open_gaps) else 0.7
    return [
        ConfidenceSignal(name="data_completeness", value=evidence, weight=0.5,
                         note=f"{cited} of {len(open_gaps)} open gaps cite records ({facts.review.measures_version})"),
        ConfidenceSignal(name="reachability", value=reach, weight=0.25, note=reach_note),
        ConfidenceSignal(name="eligibility_certainty",
                         value=1.0 if facts.eligibility.outcome == "complete" else 0.5, weight=0.15,
                         note=f"eligibility outcome {facts.eligibility.outcome}"),
        ConfidenceSignal(name="rule_specificity", value=0.9, weight=0.1, note=NAME),
    ]


def _confidence(signals: list[ConfidenceSignal]) -> float:
    return round(sum(s.weight * s.value for s in signals), 4)


def _evidence(facts: CareGapFacts, open_gaps: list[GapStatus]) -> list[str]:
    review, eligibility = facts.review, facts.eligibility
    return [
        f"period={review.period_start.isoformat()}/{review.period_end.isoformat()}",
        f"measures={review.measures_version}",
        f"open={len(open_gaps)} of {sum(1 for g in review.gaps if g.in_denominator)} applicable",
        f"eligibility={eligibility.plan_type or 'none'}:{'inforce' if eligibility.inforce else 'not-inforce'}",
    ]


class OfflineGapRules:
    """Rule-based care-gap planner; same facts (and ``now``) in, same proposals out."""

    name = NAME

    def plan(self, data: GapPlannerInput) -> PlannerOutput:
        return PlannerOutput(planner=NAME, proposals=self.propose(data))

    def propose(self, data: GapPlannerInput) -> list[ProposedAction]:
        facts = data.facts
        open_gaps = facts.review.open_gaps
        if not open_gaps:
            return []
        ids = [g.measure_id for g in open_gaps]
        evidence = _evidence(facts, open_gaps)
        due = task_due(data.now, facts)
        reason = _id_list(ids, "open care gaps: ")
        proposals: list[ProposedAction] = []
        channel = reminder_channel(facts.member)
        if channel is not None:
            signals = gap_signals(facts, needs_contact=True)
            proposals.append(ProposedAction(
                action_id="g1-reminder",
                arguments=SendOutreachArgs(channel=channel, template="follow-up-reminder",
                                           message=reminder_message(len(open_gaps))),
                rationale=f"Remind the member on the {channel} channel that care is due; the text names no "
                          "condition or test (someone else may read it).",
                evidence=[*evidence, f"channel={channel}", f"tz={facts.member.time_zone}"],
                confidence=_confidence(signals), signals=signals,
            ))
        task_signals = gap_signals(facts, needs_contact=False)
        proposals.append(ProposedAction(
            action_id="g2-scheduling",
            arguments=CreateTaskArgs(
                kind="gap-closure-scheduling", queue=SCHEDULING_QUEUE, priority="routine",
                description=_id_list(ids, "Help the member schedule the visits that close: "),
                reason=reason if channel is not None else _id_list(ids, "open care gaps (no contact channel): "),
                due=due,
            ),
            rationale="A care coordinator helps the member book the visits before the measurement period ends.",
            evidence=evidence, confidence=_confidence(task_signals), signals=task_signals,
        ))
        proposals.append(ProposedAction(
            action_id="g3-pcp",
            arguments=CreateTaskArgs(
                kind="pcp-gap-notification", queue=PCP_QUEUE, priority="routine",
                description=_id_list(ids, "Notify the member's primary care practice of the open measures: "),
                reason=reason, due=due,
            ),
            rationale="The primary care practice can close the gaps at the member's next visit.",
            evidence=evidence, confidence=_confidence(task_signals), signals=task_signals,
        ))
        return proposals


class GapPlannerActivity:
    """Exposes the care-gap planner (the offline rules) as the ``agents.plan_care_gaps`` activity."""

    def __init__(self, planner: OfflineGapRules | None = None,
                 calibration: PlannerCalibration | None = None) -> None:
        self._planner = planner or OfflineGapRules()
        self._calibration = calibration  # the worker's (agents.planner_calibration); None: raw confidence

    def activities(self) -> list[object]:
        return [self.plan_care_gaps]

    @activity.defn(name=PLAN_GAPS_ACTIVITY)
    async def plan_care_gaps(self, data: GapPlannerInput) -> PlannerOutput:
        async with heartbeating():  # a model planner may stand here later; the offline rules return at once
            return calibrated(self._planner.plan(data), self._calibration)


PLAN_CARE_GAPS = ToolSpec(PLAN_GAPS_ACTIVITY, "planner", GapPlannerInput, PlannerOutput,
                          heartbeat_seconds=HEARTBEAT_TIMEOUT_SECONDS)
"""The care-gap planner as a tool of the care-gap program (hosted by :class:`GapPlannerActivity`)."""
