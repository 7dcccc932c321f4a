"""Checks on the values a caller's filter puts into a Temporal visibility query.

The inbox's filters become a visibility query (``workflows.inbox.inbox_query``): a quote or a
backslash there broke the query (a 500) and is the first step of an injection. A value is refused here, with
a 422 naming the parameter and the fix, before any query is built.
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
