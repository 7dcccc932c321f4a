"""The write tools as model tool-calling schemas, and the model's calls parsed back into typed arguments.

One source of truth: each schema is generated from the pydantic model the tool
itself validates (``CreateTaskArgs``, ``SendOutreachArgs``,
``DraftCarePlanArgs``), plus a ``rationale``. A call the agent may not make,
arguments that are not JSON, or arguments that fail the model's validation
come back as :class:`CallProblem` (shown to the model in the repair round
trip), never as an exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from agents.deidentify import has_token
from tools.care_plan import DraftCarePlanArgs
from tools.outreach import SendOutreachArgs
from tools.tasks import CreateTaskArgs

__all__ = ["ALLOWED_TOOLS", "CallProblem", "ParsedCall", "function_schema", "parse_call", "tool_schemas",
           "validation_details", "with_rationale"]

_ARGUMENT_MODELS: dict[str, type[BaseModel]] = {
    "create_task": CreateTaskArgs,
    "send_outreach": SendOutreachArgs,
    "draft_care_plan": DraftCarePlanArgs,
}
ALLOWED_TOOLS = tuple(_ARGUMENT_MODELS)
_DESCRIPTIONS = {
    "create_task": "Propose a work item for a human care manager (e.g. the TCM interactive contact).",
    "send_outreach": "Propose a message to the member on one channel.",
    "draft_care_plan": "Propose a draft transitional care plan for clinician review.",
}


class _Rationale(BaseModel):
    rationale: str = Field(min_length=3, max_length=500, description="One sentence: why, citing the facts used.")


_CALL_MODELS: dict[str, type[BaseModel]] = {}


def _inline(schema: Any, defs: dict[str, Any], *, properties: bool = False) -> Any:  # noqa: ANN401
    """The schema with local ``$ref``s replaced by their definitions (some servers do not resolve refs)."""
    if isinstance(schema, dict):
        if properties:  # field names, one of which may well be "title"
            return {k: _inline(v, defs) for k, v in schema.items()}
        if "$ref" in schema:
            return _inline(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: _inline(v, defs, properties=k == "properties") for k, v in schema.items()
                if k not in ("$defs", "title")}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


def function_schema(name: str, description: str, model: type[BaseModel]) -> dict[str, Any]:
    """One entry of a chat-completions ``tools`` parameter from a pydantic model (refs inlined, no ``tool``)."""
    schema = model.model_json_schema()
    parameters = _inline(schema, schema.get("$defs", {}))
    parameters["properties"].pop("tool", None)
    parameters["required"] = [r for r in parameters.get("required", []) if r != "tool"]
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


def with_rationale(model: type[BaseModel]) -> type[BaseModel]:
    """The model with a required one-sentence ``rationale`` (what a tool call carries besides its arguments)."""
    return type(f"{model.__name__}Call", (model, _Rationale), {})


_CALL_MODELS.update({tool: with_rationale(model) for tool, model in _ARGUMENT_MODELS.items()})


def tool_schemas() -> list[dict[str, Any]]:
    """The ``tools`` parameter of a chat-completions request."""
    return [function_schema(tool, _DESCRIPTIONS[tool], model) for tool, model in _CALL_MODELS.items()]


@dataclass(frozen=True)
class ParsedCall:
    arguments: CreateTaskArgs | SendOutreachArgs | DraftCarePlanArgs
    rationale: str


@dataclass(frozen=True)
class CallProblem:
    call_id: str
    tool: str
    message: str

    def __str__(self) -> str:
        return f"{self.tool} (call {self.call_id}): {self.message}"


def parse_call(call_id: str, tool: str, arguments_json: str,
               restore: Callable[[Any], Any] | None = None) -> ParsedCall | CallProblem:
    """Typed arguments for one tool call, or the problem to show the model.

    ``restore`` maps de-identification tokens back to values in the parsed arguments, before validation.
    Member-facing text may not carry tokens at all: identifiers never go into a message to the member.
    """
    if tool not in _CALL_MODELS:
        return CallProblem(call_id, tool, f"tool {tool!r} is not available to this agent; "
                                          f"use one of {', '.join(ALLOWED_TOOLS)}")
    try:
        raw = json.loads(arguments_json or "{}")
    except json.JSONDecodeError as err:
        return CallProblem(call_id, tool, f"arguments are not valid JSON ({err.msg} at character {err.pos})")
    if not isinstance(raw, dict):
        return CallProblem(call_id, tool, "arguments must be a JSON object")
    raw.pop("tool", None)
    if tool == "send_outreach" and isinstance(raw.get("message"), str) and has_token(raw["message"]):
        return CallProblem(call_id, tool, "message contains a token such as [MEMBER_1]; a message to the member "
                                          "carries no identifiers or dates")
    if restore is not None:
        raw = restore(raw)
    try:
        call = _CALL_MODELS[tool].model_validate(raw)
    except ValidationError as err:
        return CallProblem(call_id, tool, f"invalid arguments: {validation_details(err)}")
    data = call.model_dump(exclude={"rationale"})
    return ParsedCall(arguments=_ARGUMENT_MODELS[tool].model_validate(data), rationale=call.rationale)


def validation_details(err: ValidationError) -> str:
    """The first few validation errors as ``field.path: message``, for a model to correct."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in err.errors()[:5])
