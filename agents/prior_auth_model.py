"""The model-backed determination recommender: an OpenAI-compatible model proposes the determination.

The model sees the request's service codes, the medical policy's criterion ids
and descriptions, and the evidence review's finding for each criterion (met or
not, how many cited passages support it, how many contradict it) — no note
text, no identifiers, no dates. Clinical notes are free text that an
allow-list cannot de-identify, so they never leave the evidence activity; the
citations stay offsets into the notes that a reviewer opens in the inbox.

The model answers with one ``issue_determination`` tool call. An answer is
refused, and the model asked once to repair it, when it has no call or more
than one, arguments that fail validation, a criterion or line the request does
not have, or a denial that cites no criteria. A repaired answer, and one whose
outcome differs from the offline rules' on the same review, goes to a human
with that reason. An answer still unusable after the repair, or a model that
cannot be reached, gives the offline rules' proposal, flagged for review.

The determination's explanation and rationale are checked for PHI on the
worker before the activity returns (:func:`agents.generated_text.withhold_determination_phi`):
the explanation becomes the ClaimResponse's disposition the provider reads. Text
that identifies someone is replaced and the determination goes to a reviewer; a
reason code that does refuses the model's recommendation for the rules'. The
reasons a reviewer reads never quote what the model wrote (a criterion id, a
tool name, a line's code): they name what is wrong and list the valid values.

The guardrails judge the proposal as they judge the offline rules': a denial,
partial or pend is only ever a recommendation that an MD decides (deny and
partial with a second reviewer), whatever the model argues.

Confidence = the offline rules' evidence signals × the model's certainty
(log-probabilities of the call's value tokens, or 0.85 without them).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog
from openai import AsyncOpenAI
from pydantic import BaseModel, ValidationError
from temporalio.exceptions import ApplicationError

from agents.generated_text import IdentifierSource, PhiNotWithheld, withhold_determination_phi
from agents.model_client import (
    CERTAINTY_WITHOUT_LOGPROBS,
    Answer,
    ChatModel,
    ModelConfig,
    Tally,
    model_certainty,
    repair_messages,
)
from agents.planner import PlannerOutput
from agents.prior_auth_planner import OfflineDeterminationRules, RecommendInput
from agents.prompts import um_recommender_prompts
from agents.tool_calls import function_schema, validation_details, with_rationale
from guardrails.actions import ConfidenceSignal, ProposedAction
from guardrails.facts import PriorAuthFacts
from guardrails.phi_text import MemberIdentifiers
from tools.determination import IssueDeterminationArgs

__all__ = ["ModelDeterminationRecommender", "determination_brief"]

log = structlog.get_logger(__name__)

TOOL = "issue_determination"

_CALL = with_rationale(IssueDeterminationArgs)
_SCHEMA = function_schema(TOOL, "Recommend the determination of this prior-authorization request.", _CALL)


def determination_brief(facts: PriorAuthFacts) -> dict[str, Any]:
    """What the model sees: codes, criterion ids and descriptions, finding counts; no notes, ids or dates."""
    return {
        "coverage": {"inforce": facts.eligibility.inforce, "outcome": facts.eligibility.outcome,
                     "plan_type": facts.eligibility.plan_type},
        "criteria_version": facts.review.criteria_version,
        "notes_read": facts.review.notes_read,
        "lines": [{
            "sequence": s.sequence, "code": s.code, "quantity": s.quantity, "medical_policy": s.policy_id,
            "title": s.title,
            "criteria": [{"id": c.criterion_id, "description": c.description, "status": c.status,
                          "supporting_passages": c.citations_found, "contradicting_passages": c.contrary_found,
                          "passages_needed": c.min_citations} for c in s.criteria],
        } for s in facts.review.services],
    }


class _Parsed(BaseModel):
    arguments: IssueDeterminationArgs
    rationale: str


def _problems(answer: Answer, facts: PriorAuthFacts) -> tuple[_Parsed | None, list[tuple[str, str]]]:
    """The answer's one determination, or the problems as (call id, message) to show the model."""
    calls = [c for c in answer.calls if c.kind == "function"]
    if not calls:
        why = "the answer was cut off (length)" if answer.finish_reason == "length" else "the answer had no tool call"
        return None, [("-", f"{why}; call {TOOL} once")]
    if len(calls) > 1:
        return None, [(c.id, f"one {TOOL} call only, not {len(calls)}") for c in calls[1:]]
    call = calls[0]
    if call.name != TOOL:
        return None, [(call.id, f"an unknown tool was called; call {TOOL}")]
    try:
        raw = json.loads(call.arguments or "{}")
        if not isinstance(raw, dict):
            return None, [(call.id, "arguments must be a JSON object")]
        raw.pop("tool", None)
        parsed = _CALL.model_validate(raw)
    except json.JSONDecodeError as err:
        return None, [(call.id, f"arguments are not valid JSON ({err.msg} at character {err.pos})")]
    except ValidationError as err:
        return None, [(call.id, f"invalid arguments: {validation_details(err)}")]
    args = IssueDeterminationArgs.model_validate(parsed.model_dump(exclude={"rationale"}))
    # The messages below reach reviewers: they count what the model wrote and list the request's own values.
    known = facts.review.criterion_ids()
    unknown = [c for c in dict.fromkeys([*args.criteria_cited, *args.requested_documentation]) if c not in known]
    problems = []
    if unknown:
        problems.append((call.id, f"{_count(len(unknown), 'unknown criterion id')} cited (not in the medical policy);"
                                  f" use only these ids: {', '.join(sorted(known))}"))
    lines = {(s.sequence, s.code) for s in facts.review.services}
    decided = {(i.sequence, i.code) for i in args.items}
    if decided != lines:
        problems.append((call.id, f"decide exactly the request's lines {sorted(lines)}; the answer decided "
                                  f"{_count(len(decided), 'line')}, {len(decided - lines)} not in the request"))
    return _Parsed(arguments=args, rationale=parsed.rationale), problems


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


class ModelDeterminationRecommender:
    """Recommends the determination with a language model over the chat-completions protocol."""

    def __init__(self, config: ModelConfig, client: AsyncOpenAI | None = None, *,
                 identifiers: IdentifierSource | None = None) -> None:
        """``identifiers`` reads a member's identifiers from the records store (the worker passes
        :class:`agents.generated_text.StoreIdentifiers`); without it only identifier patterns are checked."""
        self.config = config
        self._identifiers = identifiers
        self.name = f"model:{config.model}"
        self._model = ChatModel(config, client, step="recommender")
        self._prompts = um_recommender_prompts()
        self._rules = OfflineDeterminationRules()

    async def recommend(self, data: RecommendInput, *, final_attempt: bool = True) -> PlannerOutput:
        facts = data.facts
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self._prompts.render("system")},
            {"role": "user", "content": self._prompts.render(
                "user", facts_json=json.dumps(determination_brief(facts), indent=1, sort_keys=True))},
        ]
        tally = Tally()
        try:
            answer = await self._model.complete(messages, [_SCHEMA], tally)
            parsed, problems = _problems(answer, facts)
            first = problems
            if problems:
                log.warning("recommender.answer_refused", model=self.config.model, problems=len(problems))
                messages += repair_messages(answer, dict(problems), self._prompts.render(
                    "repair", problems=[m for _, m in problems]))
                answer = await self._model.complete(messages, [_SCHEMA], tally)
                parsed, problems = _problems(answer, facts)
        except ApplicationError as err:
            if not err.non_retryable and not final_attempt:
                raise  # Temporal retries a model that is down or rate-limited
            return self._fallback(data, f"model {self.config.model} could not recommend: {err.message}", tally)
        if problems or parsed is None:
            return self._fallback(data, f"model {self.config.model} answer unusable after one repair: "
                                  + "; ".join(m for _, m in problems[:3]), tally, repaired=True)
        member = None
        if self._identifiers is not None:  # a store read: off the activity's loop
            member = await asyncio.to_thread(self._identifiers, facts.member.member_id)
        return self._proposal(data, parsed, answer, tally, first, member)

    def _proposal(self, data: RecommendInput, parsed: _Parsed, answer: Answer, tally: Tally,
                  first: list[tuple[str, str]], member: MemberIdentifiers | None) -> PlannerOutput:
        offline = self._rules.recommend(data).proposals[0]
        args = parsed.arguments
        reasons = []
        if first:
            reasons.append("the model's first answer was refused (" + "; ".join(m for _, m in first[:2])
                           + "); a human checks the repaired recommendation")
        if args.outcome != offline.arguments.outcome:
            reasons.append(f"the model recommends {args.outcome} where the offline rules recommend "
                           f"{offline.arguments.outcome} on the same evidence review")
        certainty, note = model_certainty(answer.logprobs, answer.calls[0].arguments)
        if certainty is None:
            certainty, note = CERTAINTY_WITHOUT_LOGPROBS, f"{note}; default {CERTAINTY_WITHOUT_LOGPROBS}"
        signals = [*offline.signals, ConfidenceSignal(name="model_certainty", value=certainty, weight=1.0,
                                                      note=f"{self.config.model}: {note}; multiplies the evidence")]
        proposal = ProposedAction(
            action_id=offline.action_id, arguments=args, rationale=parsed.rationale[:500],
            evidence=offline.evidence, confidence=round(min(offline.confidence * certainty, 1.0), 4),
            signals=signals, review_reasons=[r[:500] for r in reasons])
        try:
            proposal, found = withhold_determination_phi(proposal, member, offline)
        except PhiNotWithheld as withheld:
            log.warning("recommender.phi_withheld", model=self.config.model, kinds=withheld.found, replaced=False)
            return self._fallback(data, f"{withheld}: the model's recommendation was not kept", tally,
                                  repaired=bool(first))
        if found:  # the kinds only: the values stay out of the log
            log.warning("recommender.phi_withheld", model=self.config.model, kinds=found, replaced=True)
        usage = self._model.usage(tally, repaired=bool(first))
        log.info("recommender.recommended", model=self.config.model, outcome=args.outcome,
                 agrees=args.outcome == offline.arguments.outcome, requests=usage.requests,
                 prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)
        return PlannerOutput(planner=self.name, model=self.config.model, prompt_version=self._prompts.version,
                             usage=usage, proposals=[proposal])

    def _fallback(self, data: RecommendInput, reason: str, tally: Tally, *, repaired: bool = False) -> PlannerOutput:
        log.warning("recommender.fallback", model=self.config.model, requests=tally.requests)
        out = self._rules.recommend(data)
        flagged = [p.model_copy(update={"review_reasons": [*p.review_reasons, reason[:500]]}) for p in out.proposals]
        return out.model_copy(update={
            "planner": f"{self.name} → {out.planner}", "model": self.config.model,
            "prompt_version": self._prompts.version, "proposals": flagged,
            "usage": self._model.usage(tally, repaired=repaired) if tally.requests else None})

