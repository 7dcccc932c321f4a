"""The shared pydantic payload converter: one per process, identical results, never shared with context."""

from __future__ import annotations

import dataclasses
from datetime import date

from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import WorkflowSerializationContext

from runtime.data_converter import DATA_CONVERTER, SharedPydanticPayloadConverter
from tools.eligibility import EligibilityInput

CONTEXT = WorkflowSerializationContext(namespace="default", workflow_id="outreach-x")


def test_every_clone_of_the_data_converter_gets_the_same_payload_converter() -> None:
    # The SDK clones the data converter per activation (dataclasses.replace runs __post_init__).
    clones = [dataclasses.replace(DATA_CONVERTER) for _ in range(3)] + [DATA_CONVERTER.with_context(CONTEXT)]
    inner = {id(c.payload_converter._inner_payload_converter) for c in clones}  # type: ignore[attr-defined]
    assert inner == {id(SharedPydanticPayloadConverter())}
    assert isinstance(SharedPydanticPayloadConverter(), PydanticPayloadConverter)


def test_payloads_are_those_of_the_plain_pydantic_converter() -> None:
    value = EligibilityInput(member_id="mbr-1", on_date=date(2024, 3, 5))
    shared, plain = SharedPydanticPayloadConverter(), PydanticPayloadConverter()
    assert shared.to_payloads([value]) == plain.to_payloads([value])
    assert shared.from_payloads(plain.to_payloads([value]), [EligibilityInput]) == [value]


def test_a_context_taking_component_gets_a_private_copy(monkeypatch) -> None:  # noqa: ANN001
    shared = SharedPydanticPayloadConverter()
    components = list(shared.converters.values())
    assert shared.with_context(CONTEXT) is shared  # the pydantic components take no context
    monkeypatch.setattr(SharedPydanticPayloadConverter, "get_converters_with_context",
                        lambda self, context: list(reversed(components)))
    private = shared.with_context(CONTEXT)
    assert private is not shared and type(private) is PydanticPayloadConverter
    assert list(private.converters.values()) == list(reversed(components))
    assert list(shared.converters.values()) == components  # the shared one is untouched
