"""What every write tool shares: deterministic ids and the write result."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

__all__ = ["WriteResult", "resource_id"]

_NAMESPACE = uuid.UUID("6f1d0c3e-8a4b-4c57-9d1e-4b3a2f1e0c9d")


def resource_id(idempotency_key: str, part: str = "") -> str:
    """The id of a resource written under this key: the same key always names the same resource."""
    return str(uuid.uuid5(_NAMESPACE, f"{idempotency_key}#{part}"))


class WriteResult(BaseModel):
    """What a write tool made (or had already made for the same idempotency key)."""

    reference: str = Field(description="FHIR reference of the primary resource, e.g. Task/<id>.")
    created: bool = Field(description="False when the key had been used: the earlier resource is returned.")
    related: list[str] = Field(default_factory=list, description="Other resources written with it (Goals).")
