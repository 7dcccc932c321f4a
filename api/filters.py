"""Checks on the values a caller's filter names (a queue, a member pseudonym).

The inbox's filters once became a Temporal visibility query, where a quote or a backslash broke the query (a 500)
and was the first step of an injection; the inbox now reads the approvals projection with bound SQL parameters,
but a value that cannot be a queue or pseudonym is still refused here, with a 422 naming the parameter and the
fix, rather than answered with an empty page.
"""

from __future__ import annotations

import re

from runtime.errors import DecisionRefused

__all__ = ["VISIBILITY_VALUE", "visibility_value"]

VISIBILITY_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
"""What a queue name (or any other free-text filter) may be: letters, digits and ``_ . : -``, up to 100."""


def visibility_value(parameter: str, value: str | None, *, kind: str = "queue") -> str | None:
    """``value`` unchanged if it is safe in a visibility query; DecisionRefused(invalid) → 422 otherwise.

    ``parameter`` is how the caller named it (``queue``, ``--queue``); ``kind`` what it names."""
    if value is None or VISIBILITY_VALUE.fullmatch(value):
        return value
    raise DecisionRefused("invalid", (
        f"{parameter}: not a valid {kind} name (letters, digits and _ . : - only, at most 100 characters, "
        f"starting with a letter or digit); pass a name as `careloom approvals list` shows it, or leave "
        f"{parameter} out"))
