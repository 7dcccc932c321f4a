"""Model-written text with PHI in it is withheld inside the planner activity, before anything records it.

A proposal's free text (a member message, a task's description and reason, a
care plan's title, goals and activities, the rationale a reviewer reads) is
checked with :func:`guardrails.phi_text.phi_in_text` against the member's own
identifiers, read from the records store on the worker, and common identifier
patterns. Text that identifies someone is replaced by the approved template
text for that action kind (the offline rules' text, the approved check-in
message), or by a neutral "withheld" sentence where the rules have no such
action, and the action goes to a human with a reason that names what was found
without quoting it. This runs in the activity, so the text never reaches the
activity's result: not Temporal's history, not the inbox's PendingApproval or
its approvals query, not the member.

A prior-authorization determination is checked the same way
(:func:`withhold_determination_phi`): its explanation becomes the
ClaimResponse's disposition, which the provider reads (and which is written
without a human when automatic approval is on). An explanation or rationale
that identifies someone is replaced by the offline rules' text when they
recommend the same outcome, by a neutral sentence when they do not, and the
determination goes to a reviewer; a reason code that identifies someone
refuses the model's recommendation (:class:`PhiNotWithheld`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from guardrails.actions import ProposedAction
from guardrails.phi_text import MemberIdentifiers, member_identifiers, phi_in_text
from store.records import CareRecordStore
from tools.care_plan import DraftCarePlanArgs
from tools.determination import IssueDeterminationArgs
from tools.outreach import SendOutreachArgs

__all__ = ["IdentifierSource", "PhiNotWithheld", "StoreIdentifiers", "WITHHELD_EXPLANATION", "WITHHELD_RATIONALE",
           "WITHHELD_TEXT", "withhold_determination_phi", "withhold_phi"]

IdentifierSource = Callable[[str], MemberIdentifiers | None]
"""Member id → the member's identifiers (None: no Patient record; the patterns are still checked)."""

WITHHELD_TEXT = "Text withheld: the model's wording contained member identifiers"
WITHHELD_RATIONALE = "The model's rationale was withheld: it contained member identifiers."
WITHHELD_EXPLANATION = "Decided on the medical policy criteria cited in this response."
"""A determination's explanation when the model's identified someone and the rules recommend another outcome
(their explanation would argue for it): true of every determination, and the provider reads it."""
_FREE_TEXT = {"send_outreach": ("message",), "create_task": ("description", "reason"),
              "draft_care_plan": ("title", "goals", "activities")}
"""The fields of each tool that hold text the model wrote; codes, queues, dates and channels are checked too
(a model can put anything in a string) but are left to the tool's own validation."""


class PhiNotWithheld(Exception):  # noqa: N818 - a verdict for the planner, not an error for the caller
    """PHI sits in a field that is not free text (a queue, a code) and the rules have no such action: the model's
    plan cannot be kept; the planner proposes the rules' plan for review instead."""

    def __init__(self, found: list[str]) -> None:
        super().__init__(f"model text contained {_listed(found)} outside the free-text fields")
        self.found = found


class StoreIdentifiers:
    """Reads a member's identifiers from the care records store (on the worker, at planning time)."""

    def __init__(self, store: CareRecordStore) -> None:
        self._store = store

    def __call__(self, member_id: str) -> MemberIdentifiers | None:
        patient = self._store.get("Patient", member_id)
        return member_identifiers(patient) if patient is not None else None


def withhold_phi(proposal: ProposedAction, member: MemberIdentifiers | None, template: ProposedAction | None,
                 approved_message: str) -> tuple[ProposedAction, list[str]]:
    """The proposal with every model-written text that identifies someone replaced, and what was found.

    ``template`` is the offline rules' proposal of the same kind (same tool, and for a task the same task
    kind), None when the rules make no such action; ``approved_message`` is the approved text of a member
    message. Nothing found: the proposal unchanged and an empty list.
    """
    arguments = proposal.arguments
    found_in_args = _findings(arguments.model_dump(mode="json"), member)
    found_in_rationale = phi_in_text(proposal.rationale, member)
    found = list(dict.fromkeys([*found_in_args, *found_in_rationale]))
    if not found:
        return proposal, []
    if found_in_args:
        arguments = _replaced(arguments, member, template, approved_message)
    rationale = proposal.rationale
    if found_in_rationale:
        rationale = template.rationale if template is not None else WITHHELD_RATIONALE
    reason = (f"model text contained {_listed(found)}; replaced by the approved template text"
              if template is not None or isinstance(arguments, SendOutreachArgs)
              else f"model text contained {_listed(found)}; withheld (no approved template for this action)")
    return proposal.model_copy(update={"arguments": arguments, "rationale": rationale,
                                       "review_reasons": [*proposal.review_reasons, reason]}), found


def withhold_determination_phi(proposal: ProposedAction, member: MemberIdentifiers | None,
                               offline: ProposedAction) -> tuple[ProposedAction, list[str]]:
    """The model's determination with an explanation or rationale that identifies someone replaced, and what was
    found; ``offline`` is the offline rules' recommendation on the same review. Raises :class:`PhiNotWithheld`
    when a code (a reason code, a line's code) identifies someone: no approved text stands in for a code."""
    args = proposal.arguments
    if not isinstance(args, IssueDeterminationArgs) or not isinstance(offline.arguments, IssueDeterminationArgs):
        raise TypeError("withhold_determination_phi takes issue_determination proposals: use withhold_phi")
    in_codes = _findings([*args.reason_codes, *args.criteria_cited, *args.requested_documentation,
                          *(item.code for item in args.items)], member)
    if in_codes:
        raise PhiNotWithheld(in_codes)
    in_explanation = phi_in_text(args.explanation, member)
    in_rationale = phi_in_text(proposal.rationale, member)
    found = list(dict.fromkeys([*in_explanation, *in_rationale]))
    if not found:
        return proposal, []
    same = offline.arguments.outcome == args.outcome
    if in_explanation:
        args = args.model_copy(update={"explanation": offline.arguments.explanation if same else WITHHELD_EXPLANATION})
    rationale = (offline.rationale if same else WITHHELD_RATIONALE) if in_rationale else proposal.rationale
    reason = (f"model text contained {_listed(found)}; replaced by the offline rules' text" if same
              else f"model text contained {_listed(found)}; withheld (the offline rules recommend another outcome)")
    return proposal.model_copy(update={"arguments": args, "rationale": rationale,
                                       "review_reasons": [*proposal.review_reasons, reason]}), found


def _replaced(arguments: BaseModel, member: MemberIdentifiers | None, template: ProposedAction | None,
              approved_message: str) -> BaseModel:
    if isinstance(arguments, SendOutreachArgs):
        # The approved check-in text under its own template name, whatever template the model named.
        return arguments.model_copy(update={"template": "post-discharge-check-in", "message": approved_message})
    if template is not None and isinstance(arguments, DraftCarePlanArgs):
        return template.arguments  # goals and activities are lists: only the rules' whole plan is approved text
    free = _FREE_TEXT[arguments.tool]
    dumped = arguments.model_dump(mode="json")
    if template is not None:  # a task: its description and reason, where they identify someone
        replaced = {f: getattr(template.arguments, f) for f in free if _findings(dumped[f], member)}
    else:  # no approved text for this action: each string that identifies someone becomes the withheld sentence
        replaced = {f: _map_strings(dumped[f], lambda text: WITHHELD_TEXT if phi_in_text(text, member) else text)
                    for f in free}
    leftover = _findings({k: v for k, v in dumped.items() if k not in free}, member)
    if leftover:
        if template is not None:
            return template.arguments
        raise PhiNotWithheld(leftover)
    return type(arguments).model_validate({**dumped, **replaced})


def _findings(value: Any, member: MemberIdentifiers | None) -> list[str]:  # noqa: ANN401
    found: list[str] = []
    _map_strings(value, lambda text: found.extend(phi_in_text(text, member)) or text)
    return list(dict.fromkeys(found))


def _map_strings(value: Any, change: Callable[[str], str]) -> Any:  # noqa: ANN401
    if isinstance(value, dict):
        return {k: _map_strings(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, change) for v in value]
    return change(value) if isinstance(value, str) else value


def _listed(kinds: list[str]) -> str:
    return kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " and " + kinds[-1]
