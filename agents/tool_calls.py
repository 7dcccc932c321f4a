"""The write tools as model tool-calling schemas, and the model's calls parsed back into typed arguments.

One source of truth: each schema is generated from the pydantic model the tool
itself validates (``CreateTaskArgs``, ``SendOutreachArgs``,
``DraftCarePlanArgs``), plus a ``rationale``. A call the agent may not make,
arguments that are not JSON, or arguments that fail the model's validation
come back as :class:`CallProblem` (shown to the model in the repair round
trip), never as an exception.

A problem's message never quotes what the model wrote (a tool name, a call id,
a value): it reaches reviewers in the inbox, the run's history and the ledger,
and a model can write a member's name anywhere. ``str(problem)`` is the text for
people; :meth:`CallProblem.for_model` adds the call id for the repair round trip.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from agents.deidentify import has_token
from tools.care_plan import DraftCarePlanArgs
from tools.determination import IssueDeterminationArgs
from tools.outreach import SendOutreachArgs
from tools.tasks import CreateTaskArgs

__all__ = ["ALLOWED_TOOLS", "CallProblem", "ParsedCall", "function_schema", "parse_call", "safe_tool_name",
           "tool_schemas", "validation_details", "with_rationale"]

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


_PLAN_LEVEL = ("answer", "plan")
"""CallProblem.tool values the planner uses for problems that belong to no single call."""


def safe_tool_name(tool: str) -> str:
    """The tool's name when it is one the agent has (or a plan-level label), else "an unknown tool": a model
    writes the name it calls, and that text goes to reviewers and logs."""
    return tool if tool in _CALL_MODELS or tool in _PLAN_LEVEL else "an unknown tool"


@dataclass(frozen=True)
class CallProblem:
    call_id: str
    tool: str
    message: str

    def __str__(self) -> str:
        """For people (review reasons, logs): the tool only when it is a known one, no call id (the model wrote
        it), and the message, which never quotes the model's values."""
        return f"{safe_tool_name(self.tool)}: {self.message}"

    def for_model(self) -> str:
        """For the repair prompt: the model's own call id lets it find the call it made."""
        return f"{safe_tool_name(self.tool)} (call {self.call_id}): {self.message}"


def parse_call(call_id: str, tool: str, arguments_json: str,
               restore: Callable[[Any], Any] | None = None) -> ParsedCall | CallProblem:
    """Typed arguments for one tool call, or the problem to show the model.

    ``restore`` maps de-identification tokens back to values in the parsed arguments, before validation.
    Member-facing text may not carry tokens at all: identifiers never go into a message to the member.
    """
    if tool not in _CALL_MODELS:
        return CallProblem(call_id, tool, f"this tool is not available to this agent; "
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
    """The first few validation errors as ``field.path: message``, for a model to correct and a reviewer to read.

    Pydantic's messages name the rule, not the input; a path part that is not a plain field name (a key the model
    chose, in a mapping or an extra field) is shown as ``(key)``."""
    return "; ".join(f"{'.'.join(_path_part(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                     for e in err.errors()[:5])


def _path_part(part: object) -> str:
    if isinstance(part, int) or (isinstance(part, str) and part in _FIELD_NAMES):
        return str(part)
    return "(key)"


def _field_names(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[str]:
    """Every field name of the model and the models its fields hold (what a validation path may name)."""
    if model in seen:
        return set()
    seen.add(model)
    names = set(model.model_fields)
    for field in model.model_fields.values():
        for arg in _types_in(field.annotation):
            names |= _field_names(arg, seen)
    return names


def _types_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [t for arg in getattr(annotation, "__args__", ()) for t in _types_in(arg)]


_FIELD_NAMES = frozenset().union(*(_field_names(m, set()) for m in (*_CALL_MODELS.values(), IssueDeterminationArgs,
                                                                     _Rationale)))
