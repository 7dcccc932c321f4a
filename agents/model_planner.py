"""The OpenAI-compatible model planner: tool calling over ``/v1/chat/completions``.

Works against OpenAI, Azure OpenAI, vLLM, Ollama or any server that speaks the
chat-completions protocol with tools. It runs inside the ``agents.plan_outreach``
activity; the SDK's own retries are off, because Temporal owns retries:

- 429 (except ``insufficient_quota``), 408, 409 and 5xx, timeouts and refused
  connections raise a *retryable* ``ApplicationError`` whose
  ``next_retry_delay`` honours ``Retry-After``. The workflow keeps retrying
  for its planning budget (2 h by default), so a model outage parks runs until
  the model is back; past the budget the offline rules plan and a human reviews.
- Any other 4xx (400 bad request, 401 bad key, 403, 404 unknown model or URL,
  422), ``insufficient_quota``, and a 200 whose body is not a chat completion
  raise a *non-retryable* ``ModelEndpointError`` naming the setting to fix; the
  workflow then plans with the offline rules and sends every action to a human
  with that reason.

The model sees an allow-listed, de-identified brief of the run's facts. Its tool
calls become typed :class:`ProposedAction` objects. Problems get one repair
round trip with the problems shown to the model: a tool the agent may not use,
arguments that are not JSON or fail validation, identifier tokens in a message
to the member, no tool calls, and plan-level rules (exactly one TCM
interactive-contact task due by the TCM deadline for a living member, at most
one message, none for a deceased member). If the second answer still has
problems, the offline rules' plan is proposed with every action flagged for
human review: never a crash, never a silent drop. The reasons a reviewer reads
name the problem without quoting the model (no call id, no tool name the agent
does not have: :class:`agents.tool_calls.CallProblem`). A repaired plan is flagged for
review too, and so is a message whose text is not the approved template text.

Model-written text that identifies someone (the member's own names, birth date,
identifiers, phone, e-mail or address, read from the records store here on the
worker, or an SSN, phone, e-mail, MRN or date-of-birth pattern) is replaced by
the approved template text of that action kind before the activity returns, and
the action goes to a human with a reason naming what was found, never quoting it
(:mod:`agents.generated_text`). Such text is not sent back to the model for
repair: that would send the identifiers to the endpoint.

Confidence of each proposed action::

    evidence   = (0.50·data_completeness + 0.25·reachability + 0.15·eligibility_certainty) / 0.90
    certainty  = exp(mean log-probability of that call's value tokens), where the endpoint's
                 log-probabilities cover the call's text (JSON punctuation and whitespace
                 tokens excluded, positive or missing values dropped);
                 0.85 when they do not (OpenAI returns none for tool-call tokens)
    confidence = evidence × certainty

The evidence signals are the offline planner's (same facts, same values). Every
planner step records the model name, the prompt version (a digest of the
template files), token usage and the estimated cost at the configured prices.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog
from openai import AsyncOpenAI

from agents.deidentify import Deidentifier
from agents.generated_text import IdentifierSource, PhiNotWithheld, withhold_phi
from agents.model_client import (
    CERTAINTY_WITHOUT_LOGPROBS,
    Answer,
    Call,
    ChatModel,
    ModelConfig,
    Tally,
    model_certainty,
    repair_messages,
)
from agents.offline_planner import (
    CHECK_IN_MESSAGE,
    OfflinePlanner,
    evidence_for,
    evidence_signals,
)
from agents.planner import MODEL_ENDPOINT_ERROR, ModelUsage, PlannerInput, PlannerOutput
from agents.prompts import outreach_prompts
from agents.tool_calls import (
    ALLOWED_TOOLS,
    CallProblem,
    ParsedCall,
    parse_call,
    safe_tool_name,
    tool_schemas,
)
from guardrails.actions import ConfidenceSignal, ProposedAction
from guardrails.facts import RunFacts
from guardrails.phi_text import MemberIdentifiers
from tools.outreach import SendOutreachArgs
from tools.tasks import CreateTaskArgs

__all__ = ["MODEL_ENDPOINT_ERROR", "ModelConfig", "OpenAIPlanner", "model_certainty", "planning_brief"]

log = structlog.get_logger(__name__)

APPROVED_MESSAGES = {"post-discharge-check-in": CHECK_IN_MESSAGE}
"""Member-facing texts a human approved; a model-written text differing from these goes to review."""


def planning_brief(facts: RunFacts) -> dict[str, Any]:
    """The allow-listed facts a model sees: codes, counts, flags, one member reference and the dates."""
    member, stay, risk, eligibility = facts.member, facts.clinical.stay, facts.risk, facts.eligibility
    return {
        "member": {"member_id": member.member_id, "age_years": member.age_years, "deceased": member.deceased,
                   "preferred_language": member.preferred_language, "channels": member.channels,
                   "preferred_channel": member.preferred_channel, "time_zone": member.time_zone,
                   "opted_out": member.opted_out},
        "stay": {"admitted_at": stay.admitted_at.isoformat(),
                 "discharged_at": stay.discharged_at.isoformat() if stay.discharged_at else None,
                 "length_of_stay_days": stay.length_of_stay_days, "acute_admission": stay.acute_admission,
                 "admit_source": stay.admit_source, "discharge_disposition": stay.discharge_disposition},
        "condition_codes": facts.clinical.condition_codes, "ed_visits_6mo": facts.clinical.ed_visits_6mo,
        "eligibility": {"outcome": eligibility.outcome, "inforce": eligibility.inforce,
                        "plan_type": eligibility.plan_type},
        "risk": {"status": risk.status, "lace": risk.lace,
                 "components": risk.components.model_dump() if risk.components else None,
                 "charlson_categories": risk.charlson_categories, "missing": risk.missing},
        "tcm_contact_due": facts.tcm_contact_due.isoformat() if facts.tcm_contact_due else None,
    }


def _plan_problems(parsed: list[tuple[Call, ParsedCall]], facts: RunFacts) -> list[CallProblem]:
    """Rules on the plan as a whole that single-call validation cannot see."""
    problems: list[CallProblem] = []
    tasks = [(c, p.arguments) for c, p in parsed if isinstance(p.arguments, CreateTaskArgs)]
    messages = [c for c, p in parsed if isinstance(p.arguments, SendOutreachArgs)]
    if facts.member.deceased:
        if messages:
            problems.append(CallProblem(messages[0].id, "send_outreach", "the member is deceased: no outreach"))
        return problems
    tcm = [(c, a) for c, a in tasks if a.kind == "tcm-interactive-contact"]
    if len(tcm) != 1:
        problems.append(CallProblem("-", "plan", f"the plan needs exactly one create_task of kind "
                                                 f"tcm-interactive-contact, not {len(tcm)}"))
    elif facts.tcm_contact_due is not None and tcm[0][1].due > facts.tcm_contact_due:
        problems.append(CallProblem(tcm[0][0].id, "create_task", "the TCM task is due after the TCM contact "
                                                                 "deadline; use the tcm_contact_due value"))
    if len(messages) > 1:
        problems.append(CallProblem(messages[1].id, "send_outreach", "at most one message to the member"))
    return problems


def _template_for(arguments: object, templates: list[ProposedAction]) -> ProposedAction | None:
    """The rules' proposal of the same kind: same tool, and for a task the same task kind."""
    for template in templates:
        if template.tool == getattr(arguments, "tool", None) and (
                not isinstance(arguments, CreateTaskArgs) or template.arguments.kind == arguments.kind):
            return template
    return None


class OpenAIPlanner:
    """Plans outreach with a language model over the chat-completions protocol."""

    def __init__(self, config: ModelConfig, client: AsyncOpenAI | None = None, *,
                 identifiers: IdentifierSource | None = None) -> None:
        """``identifiers`` reads a member's identifiers from the records store (the worker passes
        :class:`agents.generated_text.StoreIdentifiers`); without it only identifier patterns are checked."""
        self.config = config
        self._identifiers = identifiers
        self.name = f"model:{config.model}"
        self._model = ChatModel(config, client)
        self._tools = tool_schemas()
        self._prompts = outreach_prompts()
        self._fallback = OfflinePlanner()

    async def plan(self, data: PlannerInput) -> PlannerOutput:
        deid = Deidentifier(self.config.phi)
        brief = deid.redact(planning_brief(data.facts))
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self._prompts.render("system", check_in_message=CHECK_IN_MESSAGE)},
            {"role": "user", "content": self._prompts.render(
                "user", facts_json=json.dumps(brief, indent=1, sort_keys=True), high_risk_lace=data.high_risk_lace)},
        ]
        tally = Tally()
        answer = await self._complete(messages, tally)
        parsed, problems = self._parse(answer, deid, data.facts)
        first_problems: list[CallProblem] = []
        if problems:
            first_problems = problems
            log.warning("planner.answer_refused", model=self.config.model, problems=len(problems),
                        tools=sorted({safe_tool_name(p.tool) for p in problems}))
            messages += self._repair_messages(answer, problems)
            answer = await self._complete(messages, tally)
            parsed, problems = self._parse(answer, deid, data.facts)
        usage = self._usage(tally, repaired=bool(first_problems))
        if problems:
            reason = (f"model {self.config.model} answer unusable after one repair: "
                      + "; ".join(str(p) for p in problems[:3]))
            out = self._fallback.plan_for_review(data, reason)
            return out.model_copy(update={"planner": f"{self.name} → {out.planner}", "model": self.config.model,
                                          "prompt_version": self._prompts.version, "usage": usage})
        member = await self._member_identifiers(data.facts.member.member_id)
        try:
            proposals = self._proposals(data, parsed, answer, first_problems, member)
        except PhiNotWithheld as withheld:
            log.warning("planner.phi_withheld", model=self.config.model, kinds=withheld.found, replaced=False)
            out = self._fallback.plan_for_review(data, f"{withheld}: the model's plan was not kept")
            return out.model_copy(update={"planner": f"{self.name} → {out.planner}", "model": self.config.model,
                                          "prompt_version": self._prompts.version, "usage": usage})
        log.info("planner.planned", model=self.config.model, actions=len(proposals), requests=usage.requests,
                 prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                 repaired=usage.repaired, latency_ms=usage.latency_ms)
        return PlannerOutput(planner=self.name, model=self.config.model, prompt_version=self._prompts.version,
                             usage=usage, proposals=proposals)

    async def _member_identifiers(self, member_id: str) -> MemberIdentifiers | None:
        if self._identifiers is None:
            return None
        return await asyncio.to_thread(self._identifiers, member_id)  # a store read: off the activity's loop

    async def _complete(self, messages: list[dict[str, Any]], tally: Tally) -> Answer:
        return await self._model.complete(messages, self._tools, tally)

    def _parse(self, answer: Answer, deid: Deidentifier,
               facts: RunFacts) -> tuple[list[tuple[Call, ParsedCall]], list[CallProblem]]:
        if not answer.calls:
            why = "the answer was cut off (length)" if answer.finish_reason == "length" else "the answer had no tool calls"
            return [], [CallProblem("-", "answer", f"{why}; plan with tool calls")]
        parsed: list[tuple[Call, ParsedCall]] = []
        problems: list[CallProblem] = []
        for call in answer.calls:
            if call.kind != "function":
                problems.append(CallProblem(call.id, "answer", "only function tool calls are allowed"))
                continue
            result = parse_call(call.id, call.name, call.arguments, restore=deid.restore)
            if isinstance(result, CallProblem):
                problems.append(result)
            else:
                parsed.append((call, result))
        if not problems:
            problems = _plan_problems(parsed, facts)
        return parsed, problems

    def _repair_messages(self, answer: Answer, problems: list[CallProblem]) -> list[dict[str, Any]]:
        return repair_messages(answer, {p.call_id: p.message for p in problems}, self._prompts.render(
            "repair", problems=[p.for_model() for p in problems], tools=", ".join(ALLOWED_TOOLS)))

    def _proposals(self, data: PlannerInput, parsed: list[tuple[Call, ParsedCall]], answer: Answer,
                   first_problems: list[CallProblem], member: MemberIdentifiers | None) -> list[ProposedAction]:
        facts = data.facts
        templates = self._fallback.propose(data)
        evidence = evidence_for(facts)
        repaired = ("the model's first answer was refused (" + "; ".join(str(p) for p in first_problems[:2])
                    + "); a human checks the repaired plan") if first_problems else None
        proposals = []
        for index, (call, parsed_call) in enumerate(parsed, start=1):
            arguments = parsed_call.arguments
            base = evidence_signals(facts, needs_contact=arguments.tool == "send_outreach")
            total = sum(s.weight for s in base)
            evidence_score = sum(s.weight * s.value for s in base) / total
            base = [s.model_copy(update={"weight": round(s.weight / total, 4)}) for s in base]
            certainty, note = model_certainty(answer.logprobs, call.arguments)
            if certainty is None:
                certainty, note = CERTAINTY_WITHOUT_LOGPROBS, f"{note}; default {CERTAINTY_WITHOUT_LOGPROBS}"
            signals = [*base, ConfidenceSignal(name="model_certainty", value=certainty, weight=1.0,
                                               note=f"{self.config.model}: {note}; multiplies the evidence")]
            proposal = ProposedAction(
                action_id=f"a{index}-{arguments.tool.replace('_', '-')}",
                arguments=arguments, rationale=parsed_call.rationale[:500], evidence=evidence,
                confidence=round(min(evidence_score * certainty, 1.0), 4), signals=signals,
                review_reasons=[repaired] if repaired else [])
            proposal, found = withhold_phi(proposal, member, _template_for(arguments, templates), CHECK_IN_MESSAGE)
            if found:  # the kinds only: the values stay out of the log
                log.warning("planner.phi_withheld", model=self.config.model, tool=proposal.tool, kinds=found,
                            replaced=True)
            arguments = proposal.arguments
            if isinstance(arguments, SendOutreachArgs) and arguments.message != APPROVED_MESSAGES.get(arguments.template):
                proposal.review_reasons.append("the message text was written by the model, not the approved "
                                               "template text")
            proposals.append(proposal)
        return proposals

    def _usage(self, tally: Tally, *, repaired: bool) -> ModelUsage:
        return self._model.usage(tally, repaired=repaired)
