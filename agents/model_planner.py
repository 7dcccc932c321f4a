"""The OpenAI-compatible model planner: tool calling over ``/v1/chat/completions``.

Works against OpenAI, Azure OpenAI, vLLM, Ollama or any server that speaks the
chat-completions protocol with tools. It runs inside the ``agents.plan_outreach``
activity; the SDK's own retries are off, because Temporal owns retries:

- 429, 408, 409 and 5xx, timeouts and refused connections raise a *retryable*
  ``ApplicationError`` whose ``next_retry_delay`` honours ``Retry-After``; the
  workflow retries planning without limit, so a model outage parks runs until
  the model is back instead of failing them.
- Any other 4xx (400 bad request, 401 bad key, 403, 404 unknown model or URL,
  422) raises a *non-retryable* ``ModelEndpointError`` naming the setting to
  fix; the workflow then plans with the offline rules and sends every action
  to a human with that reason.

The answer's tool calls become typed :class:`ProposedAction` objects. A call to a
tool the agent may not use, arguments that are not JSON, or arguments that fail
validation get one repair round trip with the problems shown to the model; if
the second answer is still unusable, the offline rules' plan is proposed with
every action flagged for human review (never a crash, never a silent drop).

Confidence of each proposed action::

    evidence  = (0.50·data_completeness + 0.25·reachability + 0.15·eligibility_certainty) / 0.90
    certainty = exp(mean log-probability of the tokens of that action's tool call)
                — or of the whole answer when the endpoint's log-probabilities cannot be
                aligned with the call; 0.85 when it returns none (OpenAI returns none for
                tool-call tokens); at most 0.70 when the answer needed the repair round trip
    confidence = evidence × certainty

The evidence signals are the offline planner's (same facts, same values). Every
planner step records the model name, the prompt version (a digest of the
template files), token usage and the estimated cost at the configured prices.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from openai import APIConnectionError, APIStatusError, APITimeoutError, AsyncAzureOpenAI, AsyncOpenAI
from temporalio.exceptions import ApplicationError

from agents.actions import ConfidenceSignal, ProposedAction
from agents.deidentify import Deidentifier, PhiLevel
from agents.offline_planner import OfflinePlanner, evidence_for, signals_for
from agents.planner import MODEL_ENDPOINT_ERROR, ModelUsage, PlannerInput, PlannerOutput
from agents.prompts import outreach_prompts
from agents.tool_calls import ALLOWED_TOOLS, CallProblem, ParsedCall, parse_call, tool_schemas

__all__ = ["MODEL_ENDPOINT_ERROR", "ModelConfig", "OpenAIPlanner", "model_certainty"]

log = structlog.get_logger(__name__)

CERTAINTY_WITHOUT_LOGPROBS = 0.85
CERTAINTY_CAP_AFTER_REPAIR = 0.70
_MAX_RETRY_AFTER = timedelta(minutes=10)
_HINTS = {
    400: "the endpoint rejected the request; check that the model supports tool calling "
         "(or set CARELOOM_MODEL_LOGPROBS=false if it rejects logprobs)",
    401: "check CARELOOM_MODEL_API_KEY",
    403: "the key is not allowed to use this model; check CARELOOM_MODEL_API_KEY and the model's access",
    404: "check CARELOOM_MODEL (Azure: the deployment name) and CARELOOM_MODEL_BASE_URL (it usually ends in /v1)",
    422: "the endpoint could not process the request; check that it speaks the chat-completions protocol",
}


@dataclass(frozen=True)
class ModelConfig:
    model: str
    base_url: str | None = None
    api_key: str = "not-needed"
    api_version: str | None = None
    timeout_seconds: float = 30.0
    temperature: float = 0.0
    logprobs: bool = True
    phi: PhiLevel = "safe-harbor"
    input_usd_per_mtok: float = 0.0
    output_usd_per_mtok: float = 0.0


@dataclass
class _Answer:
    message: Any
    logprobs: list[Any] | None
    finish_reason: str | None


@dataclass
class _Tally:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started: float = field(default_factory=time.monotonic)


def model_certainty(logprobs: list[Any] | None, span_text: str | None) -> tuple[float | None, str]:
    """exp(mean log-probability) over the tokens covering ``span_text`` (or all tokens); None without any."""
    if not logprobs:
        return None, "no log-probabilities returned"
    chosen = logprobs
    if span_text:
        text, starts = "", []
        for item in logprobs:
            starts.append(len(text))
            text += item.token
        at = text.find(span_text)
        if at >= 0:
            end = at + len(span_text)
            chosen = [item for item, start in zip(logprobs, starts, strict=True)
                      if start < end and start + len(item.token) > at] or logprobs
    mean = sum(item.logprob for item in chosen) / len(chosen)
    scope = "this call's tokens" if chosen is not logprobs else "the answer's tokens"
    return round(math.exp(mean), 4), f"exp(mean logprob) over {len(chosen)} of {scope}"


def _retry_after(err: APIStatusError) -> timedelta | None:
    headers = err.response.headers
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return min(timedelta(milliseconds=float(ms)), _MAX_RETRY_AFTER)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return min(timedelta(seconds=max(float(value), 0.0)), _MAX_RETRY_AFTER)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        if when is None:
            return None
        return min(max(when - datetime.now(UTC), timedelta(0)), _MAX_RETRY_AFTER)


def _endpoint_failure(err: Exception, model: str) -> ApplicationError:
    """The Temporal error for a failed model request: retryable unless the request itself is wrong."""
    if isinstance(err, APITimeoutError):
        return ApplicationError(f"model {model} did not answer in time", type="ModelTimeout")
    if isinstance(err, APIConnectionError):
        return ApplicationError(f"model endpoint for {model} unreachable: {type(err).__name__}",
                                type="ModelUnavailable")
    assert isinstance(err, APIStatusError)
    status = err.status_code
    if status in (408, 409, 429) or status >= 500:
        delay = _retry_after(err)
        return ApplicationError(
            f"model {model} answered {status}" + (f"; retrying after {delay.total_seconds():g}s" if delay else ""),
            type="ModelRateLimited" if status == 429 else "ModelUnavailable", next_retry_delay=delay)
    hint = _HINTS.get(status, "check the CARELOOM_MODEL_* settings")
    return ApplicationError(f"model endpoint refused the request for {model} ({status}): {hint}",
                            type=MODEL_ENDPOINT_ERROR, non_retryable=True)


class OpenAIPlanner:
    """Plans outreach with a language model over the chat-completions protocol."""

    def __init__(self, config: ModelConfig, client: AsyncOpenAI | None = None) -> None:
        self.config = config
        self.name = f"model:{config.model}"
        self._client = client or self._make_client(config)
        self._tools = tool_schemas()
        self._prompts = outreach_prompts()
        self._fallback = OfflinePlanner()

    @staticmethod
    def _make_client(config: ModelConfig) -> AsyncOpenAI:
        if config.api_version is not None:
            return AsyncAzureOpenAI(azure_endpoint=config.base_url, api_key=config.api_key,
                                    api_version=config.api_version, timeout=config.timeout_seconds, max_retries=0)
        return AsyncOpenAI(base_url=config.base_url, api_key=config.api_key, timeout=config.timeout_seconds,
                           max_retries=0)

    async def plan(self, data: PlannerInput) -> PlannerOutput:
        deid = Deidentifier(self.config.phi)
        facts = deid.redact(data.facts.model_dump(mode="json"))
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self._prompts.render("system")},
            {"role": "user", "content": self._prompts.render(
                "user", facts_json=json.dumps(facts, indent=1, sort_keys=True), high_risk_lace=data.high_risk_lace)},
        ]
        tally = _Tally()
        answer = await self._complete(messages, tally)
        parsed, problems = self._parse(answer, deid)
        repaired = False
        if problems:
            repaired = True
            log.warning("planner.answer_refused", model=self.config.model, problems=len(problems),
                        kinds=sorted({p.message.split(" ", 1)[0] for p in problems}))
            messages += self._repair_messages(answer, problems)
            answer = await self._complete(messages, tally)
            parsed, problems = self._parse(answer, deid)
        usage = self._usage(tally, repaired=repaired)
        if problems:
            reason = (f"model {self.config.model} answer unusable after one repair: "
                      + "; ".join(str(p) for p in problems[:3]))
            out = self._fallback.plan_for_review(data, reason)
            return out.model_copy(update={"planner": f"{self.name} → {out.planner}", "model": self.config.model,
                                          "prompt_version": self._prompts.version, "usage": usage})
        proposals = self._proposals(data, parsed, answer, repaired=repaired)
        log.info("planner.planned", model=self.config.model, actions=len(proposals), requests=usage.requests,
                 prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                 repaired=repaired, latency_ms=usage.latency_ms)
        return PlannerOutput(planner=self.name, model=self.config.model, prompt_version=self._prompts.version,
                             usage=usage, proposals=proposals)

    async def _complete(self, messages: list[dict[str, Any]], tally: _Tally) -> _Answer:
        extra: dict[str, Any] = {"logprobs": True} if self.config.logprobs else {}
        tally.requests += 1
        try:
            response = await self._client.chat.completions.create(
                model=self.config.model, messages=messages, tools=self._tools, tool_choice="auto",
                temperature=self.config.temperature, **extra)
        except (APIStatusError, APITimeoutError, APIConnectionError) as err:
            failure = _endpoint_failure(err, self.config.model)
            log.warning("planner.model_request_failed", model=self.config.model, error=failure.type,
                        retryable=not failure.non_retryable)
            raise failure from None
        if response.usage is not None:
            tally.prompt_tokens += response.usage.prompt_tokens or 0
            tally.completion_tokens += response.usage.completion_tokens or 0
        if not response.choices:
            return _Answer(message=None, logprobs=None, finish_reason="empty")
        choice = response.choices[0]
        logprobs = choice.logprobs.content if choice.logprobs is not None else None
        return _Answer(message=choice.message, logprobs=logprobs, finish_reason=choice.finish_reason)

    def _parse(self, answer: _Answer, deid: Deidentifier) -> tuple[list[tuple[str, ParsedCall]], list[CallProblem]]:
        calls = (answer.message.tool_calls if answer.message is not None else None) or []
        if not calls:
            why = "the answer was cut off (length)" if answer.finish_reason == "length" else "the answer had no tool calls"
            return [], [CallProblem("-", "-", f"{why}; plan with tool calls")]
        parsed: list[tuple[str, ParsedCall]] = []
        problems: list[CallProblem] = []
        for call in calls:
            function = getattr(call, "function", None)
            if function is None:
                problems.append(CallProblem(call.id, getattr(call, "type", "?"), "only function tool calls are allowed"))
                continue
            result = parse_call(call.id, function.name, deid.restore(function.arguments or ""))
            if isinstance(result, CallProblem):
                problems.append(result)
            else:
                parsed.append((function.arguments or "", result))
        return parsed, problems

    def _repair_messages(self, answer: _Answer, problems: list[CallProblem]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        calls = (answer.message.tool_calls if answer.message is not None else None) or []
        if calls:
            out.append({"role": "assistant", "content": answer.message.content, "tool_calls": [
                {"id": c.id, "type": "function",
                 "function": {"name": c.function.name, "arguments": c.function.arguments}} for c in calls]})
            refused = {p.call_id: p.message for p in problems}
            for c in calls:
                out.append({"role": "tool", "tool_call_id": c.id,
                            "content": f"refused: {refused[c.id]}" if c.id in refused else "accepted"})
        out.append({"role": "user", "content": self._prompts.render(
            "repair", problems=[str(p) for p in problems], tools=", ".join(ALLOWED_TOOLS))})
        return out

    def _proposals(self, data: PlannerInput, parsed: list[tuple[str, ParsedCall]], answer: _Answer,
                   *, repaired: bool) -> list[ProposedAction]:
        facts = data.facts
        evidence = evidence_for(facts)
        proposals = []
        for index, (raw_arguments, call) in enumerate(parsed, start=1):
            needs_contact = call.arguments.tool == "send_outreach"
            base = signals_for(facts, needs_contact=needs_contact)[:3]
            certainty, note = model_certainty(answer.logprobs, raw_arguments)
            if certainty is None:
                certainty = CERTAINTY_WITHOUT_LOGPROBS
            if repaired and certainty > CERTAINTY_CAP_AFTER_REPAIR:
                certainty, note = CERTAINTY_CAP_AFTER_REPAIR, f"{note}; capped: the answer needed a repair"
            signals = [*base, ConfidenceSignal(name="model_certainty", value=certainty, weight=1.0,
                                               note=f"{self.config.model}: {note}")]
            evidence_score = sum(s.weight * s.value for s in base) / sum(s.weight for s in base)
            proposals.append(ProposedAction(
                action_id=f"a{index}-{call.arguments.tool.replace('_', '-')}",
                arguments=call.arguments, rationale=call.rationale[:500], evidence=evidence,
                confidence=round(evidence_score * certainty, 4), signals=signals))
        return proposals

    def _usage(self, tally: _Tally, *, repaired: bool) -> ModelUsage:
        cost = (tally.prompt_tokens * self.config.input_usd_per_mtok
                + tally.completion_tokens * self.config.output_usd_per_mtok) / 1_000_000
        return ModelUsage(requests=tally.requests, prompt_tokens=tally.prompt_tokens,
                          completion_tokens=tally.completion_tokens, estimated_cost_usd=round(cost, 6),
                          repaired=repaired, latency_ms=int((time.monotonic() - tally.started) * 1000))
