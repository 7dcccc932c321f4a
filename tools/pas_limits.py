"""Intake limits of a prior-authorization request, checked on the raw Bundle before anything else.

A request under the HTTP body limit can still break its run: 3,000 service lines make a review, a recommendation
and an approval item per line, and a 700 kB note is read into every evidence review. These limits refuse such a
request up front, with the limit, the value seen and the setting that changes it; they run before the Bundle is
validated (validating a huge Claim is itself the cost) and nothing is stored or started.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runtime.errors import PriorAuthErrorCode, PriorAuthRequestError

__all__ = ["LIMIT_CODES", "IntakeLimits", "check_limits"]

LIMIT_CODES: frozenset[PriorAuthErrorCode] = frozenset({"too_many_items", "too_many_notes", "note_too_large"})
"""The refusal codes of :func:`check_limits` (413 for a note too large, 422 for the counts)."""


class IntakeLimits(BaseModel):
    """The limits, as the settings give them (CARELOOM_PA_MAX_ITEMS, _MAX_NOTES, _MAX_NOTE_BYTES)."""

    model_config = ConfigDict(frozen=True)

    max_items: int = Field(default=50, ge=1)
    max_notes: int = Field(default=20, ge=1)
    max_note_bytes: int = Field(default=200_000, ge=1)


def _decoded_size(data: str) -> int:
    # The size base64 decodes to, without decoding it: a malformed value is the parser's to refuse.
    compact = "".join(data.split())
    return len(compact) * 3 // 4 - (len(compact) - len(compact.rstrip("=")))


def _resources(bundle: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return []
    return [(i, e["resource"]) for i, e in enumerate(entries)
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)]


def check_limits(bundle: Any, limits: IntakeLimits) -> None:  # noqa: ANN401 - the raw request body
    """Refuse a request over a limit (PriorAuthRequestError naming limit, value and setting); anything else
    wrong with the Bundle is left to the parser."""
    if not isinstance(bundle, dict):
        return
    resources = _resources(bundle)
    for index, resource in resources:
        items = resource.get("item") if resource.get("resourceType") == "Claim" else None
        if isinstance(items, list) and len(items) > limits.max_items:
            raise PriorAuthRequestError("too_many_items", (
                f"entry[{index}] Claim has {len(items)} service lines (Claim.item); a request may carry at most "
                f"{limits.max_items} (CARELOOM_PA_MAX_ITEMS): split it into requests of at most {limits.max_items} "
                "lines, or raise CARELOOM_PA_MAX_ITEMS"))
    documents = [(i, r) for i, r in resources if r.get("resourceType") == "DocumentReference"]
    if len(documents) > limits.max_notes:
        raise PriorAuthRequestError("too_many_notes", (
            f"the request carries {len(documents)} DocumentReferences; a request may carry at most "
            f"{limits.max_notes} (CARELOOM_PA_MAX_NOTES): send the notes that document the criteria, or raise "
            "CARELOOM_PA_MAX_NOTES"))
    for index, document in documents:
        for content in document.get("content") or []:
            data = ((content or {}).get("attachment") or {}).get("data") if isinstance(content, dict) else None
            if isinstance(data, str) and (size := _decoded_size(data)) > limits.max_note_bytes:
                raise PriorAuthRequestError("note_too_large", (
                    f"entry[{index}] DocumentReference has an attachment of {size:,} bytes (decoded); a note may "
                    f"have at most {limits.max_note_bytes:,} bytes (CARELOOM_PA_MAX_NOTE_BYTES): send the part of "
                    "the record that documents the criteria, or raise CARELOOM_PA_MAX_NOTE_BYTES"))
