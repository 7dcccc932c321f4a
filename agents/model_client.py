"""The chat-completions client every model-backed step shares: one request, its failure, its cost.

Any planner or recommender that asks an OpenAI-compatible model (OpenAI, Azure
OpenAI, vLLM, Ollama) goes through :class:`ChatModel`. The SDK's own retries
are off, because Temporal owns retries:

- 429 (except ``insufficient_quota``), 408, 409 and 5xx, timeouts and refused
  connections raise a *retryable* ``ApplicationError`` whose
  ``next_retry_delay`` honours ``Retry-After``;
- any other 4xx (400, 401 bad key, 403, 404 unknown model or URL, 422),
  ``insufficient_quota``, and a 200 whose body is not a chat completion raise
  a *non-retryable* ``ModelEndpointError`` naming the setting to fix.

Token usage and latency are tallied per step (:class:`Tally`), priced at the
configured per-token rates (:meth:`ChatModel.usage`). With tracing on
(:mod:`runtime.tracing`) each request is a ``model.chat`` span under the
activity's: model name, step, token counts, status; never the prompt or the
completion.
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
from openai import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AsyncAzureOpenAI,
    AsyncOpenAI,
)
from openai.types.chat import ChatCompletion
from opentelemetry.trace import SpanKind, Status, StatusCode
from temporalio.exceptions import ApplicationError

from agents.deidentify import PhiLevel
from agents.planner import MODEL_ENDPOINT_ERROR, ModelUsage
from runtime.metrics import MODEL_ERRORS, MODEL_REQUESTS, MODEL_TOKENS
from runtime.tracing import tracer

__all__ = ["CERTAINTY_WITHOUT_LOGPROBS", "Answer", "Call", "ChatModel", "ModelConfig", "Tally", "endpoint_failure", "model_certainty",
           "parse_answer", "repair_messages", "retry_after"]

log = structlog.get_logger(__name__)

CERTAINTY_WITHOUT_LOGPROBS = 0.85
"""A call's certainty when the endpoint returns no log-probabilities for it (OpenAI returns none for tool calls)."""
_MAX_RETRY_AFTER = timedelta(minutes=10)
_SYNTAX_ONLY = set('{}[]:,"\' \n\t')
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


@dataclass(frozen=True)
class Call:
    id: str
    kind: str
    name: str
    arguments: str


@dataclass
class Answer:
    content: str | None
    calls: list[Call]
    logprobs: list[tuple[str, float]] | None
    finish_reason: str | None


@dataclass
class Tally:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started: float = field(default_factory=time.monotonic)



def model_certainty(logprobs: list[tuple[str, float]] | None, span_text: str | None) -> tuple[float | None, str]:
    """exp(mean log-probability) over the value tokens covering ``span_text``; None where that cannot be known."""
    if not logprobs or not span_text:
        return None, "no log-probabilities returned"
    text, starts = "", []
    for token, _ in logprobs:
        starts.append(len(text))
        text += token
    at = text.find(span_text)
    if at < 0:
        return None, "log-probabilities do not cover this call's text"
    end = at + len(span_text)
    chosen = [lp for (token, lp), start in zip(logprobs, starts, strict=True)
              if start < end and start + len(token) > at and not set(token) <= _SYNTAX_ONLY]
    if not chosen:
        return None, "no value tokens in this call's text"
    mean = sum(chosen) / len(chosen)
    return round(math.exp(mean), 4), f"exp(mean logprob) over {len(chosen)} value tokens of this call"


def retry_after(err: APIStatusError) -> timedelta | None:
    """The server's requested delay, from retry-after-ms or Retry-After (seconds or an HTTP date)."""
    headers = err.response.headers
    delay: timedelta | None = None
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            delay = timedelta(milliseconds=float(ms))
        elif (value := headers.get("retry-after")) is not None:
            try:
                delay = timedelta(seconds=float(value))
            except ValueError:
                when = email.utils.parsedate_to_datetime(value)
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                delay = when - datetime.now(UTC)
    except (ValueError, TypeError, OverflowError):
        return None
    if delay is None:
        return None
    return min(max(delay, timedelta(0)), _MAX_RETRY_AFTER)


def endpoint_failure(err: Exception, model: str) -> ApplicationError:
    """The Temporal error for a failed model request: retryable unless the request itself is wrong."""
    if isinstance(err, APITimeoutError):
        return ApplicationError(f"model {model} did not answer in time", type="ModelTimeout")
    if isinstance(err, APIConnectionError):
        return ApplicationError(f"model endpoint for {model} unreachable: {type(err).__name__}",
                                type="ModelUnavailable")
    if not isinstance(err, APIStatusError):
        return ApplicationError(
            f"model endpoint for {model} answered with something that is not a chat completion "
            f"({type(err).__name__}); check CARELOOM_MODEL_BASE_URL points at an OpenAI-compatible /v1",
            type=MODEL_ENDPOINT_ERROR, non_retryable=True)
    status = err.status_code
    if status == 429 and getattr(err, "code", None) == "insufficient_quota":
        return ApplicationError(f"model endpoint refused the request for {model} (429 insufficient_quota): "
                                "the account is out of quota; check its billing", type=MODEL_ENDPOINT_ERROR,
                                non_retryable=True)
    if status in (408, 409, 429) or status >= 500:
        delay = retry_after(err)
        return ApplicationError(
            f"model {model} answered {status}" + (f"; retrying after {delay.total_seconds():g}s" if delay else ""),
            type="ModelRateLimited" if status == 429 else "ModelUnavailable", next_retry_delay=delay)
    hint = _HINTS.get(status, "check the CARELOOM_MODEL_* settings")
    return ApplicationError(f"model endpoint refused the request for {model} ({status}): {hint}",
                            type=MODEL_ENDPOINT_ERROR, non_retryable=True)


def parse_answer(response: object) -> Answer:
    """The parts of a chat completion the planner uses; TypeError when it is not one."""
    if not isinstance(response, ChatCompletion):
        raise TypeError(f"a {type(response).__name__}, not a chat completion")
    if not response.choices:
        return Answer(content=None, calls=[], logprobs=None, finish_reason="empty")
    choice = response.choices[0]
    message = choice.message
    calls: list[Call] = []
    seen: set[str] = set()
    for index, call in enumerate(message.tool_calls or [], start=1):
        call_id = getattr(call, "id", None) or ""
        if not call_id or call_id in seen:  # some servers omit or repeat ids
            call_id = f"call_{index}"
        seen.add(call_id)
        function = getattr(call, "function", None)
        if function is None:
            calls.append(Call(call_id, getattr(call, "type", None) or "unknown", "?", ""))
            continue
        arguments = function.arguments
        if not isinstance(arguments, str):  # some servers send an object
            arguments = json.dumps(arguments)
        calls.append(Call(call_id, "function", function.name or "?", arguments or ""))
    logprobs = None
    if choice.logprobs is not None and choice.logprobs.content:
        logprobs = [(item.token, min(float(item.logprob), 0.0)) for item in choice.logprobs.content
                    if item.logprob is not None and not math.isnan(item.logprob)]
    return Answer(content=message.content, calls=calls, logprobs=logprobs, finish_reason=choice.finish_reason)


class ChatModel:
    """One configured model endpoint: requests with tools, failures mapped for Temporal, usage priced."""

    def __init__(self, config: ModelConfig, client: AsyncOpenAI | None = None, *, step: str = "planner") -> None:
        self.config = config
        self.step = step
        self._client = client or self._make_client(config)

    @staticmethod
    def _make_client(config: ModelConfig) -> AsyncOpenAI:
        if config.api_version is not None:
            return AsyncAzureOpenAI(azure_endpoint=config.base_url, api_key=config.api_key,
                                    api_version=config.api_version, timeout=config.timeout_seconds, max_retries=0)
        return AsyncOpenAI(base_url=config.base_url, api_key=config.api_key, timeout=config.timeout_seconds,
                           max_retries=0)

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], tally: Tally,
                       *, tool_choice: Any = "auto") -> Answer:  # noqa: ANN401
        extra: dict[str, Any] = {"logprobs": True} if self.config.logprobs else {}
        tally.requests += 1
        MODEL_REQUESTS.labels(self.step).inc()
        # The span says which model, which step, how many tokens and how it ended: never what was sent or
        # answered (no exception events either: an endpoint's error text may quote the request).
        with tracer().start_as_current_span(
                "model.chat", kind=SpanKind.CLIENT, record_exception=False, set_status_on_exception=False,
                attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": self.config.model,
                            "careloom.model.step": self.step, "careloom.model.tools": len(tools),
                            "careloom.model.messages": len(messages)}) as span:
            try:
                response = await self._client.chat.completions.create(
                    model=self.config.model, messages=messages, tools=tools, tool_choice=tool_choice,
                    temperature=self.config.temperature, **extra)
                if getattr(response, "usage", None) is not None:
                    tally.prompt_tokens += response.usage.prompt_tokens or 0
                    tally.completion_tokens += response.usage.completion_tokens or 0
                    MODEL_TOKENS.labels(self.step, "prompt").inc(response.usage.prompt_tokens or 0)
                    MODEL_TOKENS.labels(self.step, "completion").inc(response.usage.completion_tokens or 0)
                    span.set_attributes({"gen_ai.usage.input_tokens": response.usage.prompt_tokens or 0,
                                         "gen_ai.usage.output_tokens": response.usage.completion_tokens or 0})
                answer = parse_answer(response)
                span.set_attributes({"careloom.model.status": "ok", "careloom.model.calls": len(answer.calls),
                                     "gen_ai.response.finish_reasons": [answer.finish_reason or "unknown"]})
                return answer
            except (APIError, ValueError, TypeError, AttributeError) as err:
                # APIError covers status, timeout, connection and response-validation errors; the others are a
                # 200 whose body is not a chat completion (an HTML page, broken JSON, missing fields).
                failure = endpoint_failure(err, self.config.model)
                MODEL_ERRORS.labels(self.step, failure.type or "error").inc()
                span.set_attributes({"careloom.model.status": failure.type or "error",
                                     "careloom.model.retryable": not failure.non_retryable})
                if isinstance(err, APIStatusError):
                    span.set_attribute("http.response.status_code", err.status_code)
                span.set_status(Status(StatusCode.ERROR, failure.type or "error"))
                log.warning("planner.model_request_failed", model=self.config.model, error=failure.type,
                            retryable=not failure.non_retryable)
                raise failure from None

    def usage(self, tally: Tally, *, repaired: bool) -> ModelUsage:
        cost = (tally.prompt_tokens * self.config.input_usd_per_mtok
                + tally.completion_tokens * self.config.output_usd_per_mtok) / 1_000_000
        return ModelUsage(requests=tally.requests, prompt_tokens=tally.prompt_tokens,
                          completion_tokens=tally.completion_tokens, estimated_cost_usd=round(cost, 6),
                          repaired=repaired, latency_ms=int((time.monotonic() - tally.started) * 1000))


def repair_messages(answer: Answer, refused: dict[str, str], repair_prompt: str) -> list[dict[str, Any]]:
    """The assistant's answer as it was, one tool message per call (refused or not), then the repair prompt."""
    assistant: dict[str, Any] = {"role": "assistant", "content": answer.content or ""}
    function_calls = [c for c in answer.calls if c.kind == "function"]
    out: list[dict[str, Any]] = [assistant]
    if function_calls:
        assistant["tool_calls"] = [{"id": c.id, "type": "function",
                                    "function": {"name": c.name, "arguments": c.arguments}}
                                   for c in function_calls]
        for c in function_calls:
            out.append({"role": "tool", "tool_call_id": c.id, "content": (
                f"refused: {refused[c.id]}" if c.id in refused
                else "valid, but nothing was executed: include this call again in your complete answer")})
    out.append({"role": "user", "content": repair_prompt})
    return out
