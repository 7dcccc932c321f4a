"""What differs between a stored prior-authorization request and a resubmission of it, named for the submitter.

Both sides are compared in their stored form (references and ids scoped the same way), so only what the
submitter changed shows, e.g. ``item 1 quantity 14 -> 365; Claim type; DocumentReference note-1 content``.
Values are shown only for a line's quantity and code (the submitter sent both; the message goes back to them
and is never logged).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SUBMITTED_ID_SYSTEM", "differences", "submitted_id"]

SUBMITTED_ID_SYSTEM = "urn:careloom:pas-submitted-id"
"""Identifier system of a stored resource's id as the submitter sent it (stored ids are scoped)."""


def submitted_id(resource: dict[str, Any]) -> str:
    """The id the submitter gave a stored resource."""
    for identifier in resource.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") == SUBMITTED_ID_SYSTEM:
            return str(identifier.get("value"))
    return str(resource.get("id"))


def _code(item: dict[str, Any]) -> str | None:
    return next((c.get("code") for c in (item.get("productOrService") or {}).get("coding") or [] if c.get("code")),
                None)


def _item_changes(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[str]:
    old = {i.get("sequence"): i for i in before}
    new = {i.get("sequence"): i for i in after}
    changes: list[str] = []
    for sequence in sorted(set(old) | set(new), key=str):
        if sequence not in new:
            changes.append(f"item {sequence} removed")
        elif sequence not in old:
            changes.append(f"item {sequence} added")
        else:
            a, b = old[sequence], new[sequence]
            for key in sorted(set(a) | set(b)):
                if a.get(key) == b.get(key):
                    continue
                if key == "quantity":
                    changes.append(f"item {sequence} quantity {(a.get(key) or {}).get('value', 1)} -> "
                                   f"{(b.get(key) or {}).get('value', 1)}")
                elif key == "productOrService":
                    changes.append(f"item {sequence} code {_code(a)} -> {_code(b)}")
                else:
                    changes.append(f"item {sequence} {key}")
    return changes


def _resource_changes(name: str, before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    changes: list[str] = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) == after.get(key):
            continue
        if key == "item" and before.get("resourceType") == "Claim":
            changes += _item_changes(before.get(key) or [], after.get(key) or [])
        else:
            changes.append(f"{name} {key}")
    return changes


def differences(stored: list[dict[str, Any]], resubmitted: list[dict[str, Any]]) -> list[str]:
    """Each difference, Claim first, then the other resources by type and submitted id."""
    def by_name(resources: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r["resourceType"], submitted_id(r)): r for r in resources}

    old, new = by_name(stored), by_name(resubmitted)
    changes: list[str] = []
    for rtype, rid in sorted(set(old) | set(new), key=lambda k: (k[0] != "Claim", k)):
        name = "Claim" if rtype == "Claim" else f"{rtype} {rid}"
        if (rtype, rid) not in new:
            changes.append(f"{name} removed")
        elif (rtype, rid) not in old:
            changes.append(f"{name} added")
        else:
            changes += _resource_changes(name, old[(rtype, rid)], new[(rtype, rid)])
    return changes
