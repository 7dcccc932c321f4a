"""De-identification of what is sent to a model endpoint, and re-identification of its answer.

Everything the model planner sends goes through one :class:`Deidentifier`,
created per planning step inside the activity; its token map never leaves the
worker (it is not returned, logged or stored).

- Direct identifiers (member, encounter and coverage ids, pseudonyms, workflow
  ids; names, birth dates, addresses, MRNs wherever a field of that name
  appears) become stable tokens such as ``[MEMBER_1]``.
- Values that look like phone numbers, e-mail addresses, SSNs or MRNs inside
  any string become tokens too, as does any known identifier value quoted
  inside a longer string.
- ``safe-harbor`` (45 CFR 164.514(b)(2)) also tokenises every date and
  date-time and reports ages of 90 and over as ``"90+"``;
  ``limited-data-set`` (164.514(e), for a model inside the plan's network under
  a data use agreement) keeps dates and exact ages.

:meth:`Deidentifier.restore` puts the original values back into the model's
answer (the parsed tool-call arguments) before they are validated.

The model planner sends an allow-listed brief of the run's facts, so this
walker is the second line of defence, not the only one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from runtime.phi import DIRECT_KEYS, PATTERNS, normalize_key

__all__ = ["Deidentifier", "PhiLevel", "has_token"]

PhiLevel = Literal["safe-harbor", "limited-data-set"]

# Keys compared after lower-casing and dropping "_" and "-" (member_id, memberId, member-id).
_ID_KEYS = {
    "memberid": "MEMBER", "pseudonym": "MEMBER", "encounterid": "ENCOUNTER", "coverageid": "COVERAGE",
    "workflowid": "RUN", "id": "ID", "mrn": "MRN", "identifier": "ID", "reference": "ID",
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$")
_DATE_IN_TEXT = re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ][0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?)?\b")
_TOKEN = re.compile(r"\[[A-Z]+_\d+\]")
_TOKEN_SPLIT = re.compile(r"(\[[A-Z]+_\d+\])")


class Deidentifier:
    """Replaces identifiers by tokens on the way out and restores them on the way back."""

    def __init__(self, level: PhiLevel = "safe-harbor") -> None:
        self.level = level
        self._by_value: dict[str, str] = {}
        self._by_token: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def token(self, kind: str, value: str) -> str:
        """The stable token for ``value`` (the same value always gets the same token)."""
        if value in self._by_value:
            return self._by_value[value]
        self._counts[kind] = self._counts.get(kind, 0) + 1
        token = f"[{kind}_{self._counts[kind]}]"
        self._by_value[value], self._by_token[token] = token, value
        return token

    def redact(self, value: Any) -> Any:  # noqa: ANN401
        """A copy of a JSON-like value with identifiers (and, under safe harbor, dates) tokenised."""
        redacted = self._walk(value, None)
        return self._quoted(redacted)

    def redact_text(self, text: str) -> str:
        """Free text: patterns and every identifier already seen become tokens."""
        return self._quoted(self._patterns(text))

    def restore(self, value: Any) -> Any:  # noqa: ANN401
        """Original values back wherever the model used a token, in parsed JSON; unknown tokens stay as they are."""
        return _map_leaves(value, lambda leaf: _TOKEN.sub(lambda m: self._by_token.get(m.group(0), m.group(0)), leaf)
                           if isinstance(leaf, str) else leaf)

    def _walk(self, value: Any, key: str | None) -> Any:  # noqa: ANN401
        lowered = normalize_key(key)
        kind = _ID_KEYS.get(lowered) or DIRECT_KEYS.get(lowered)
        if kind is not None and isinstance(value, (dict, list)):
            return self._all_leaves(value, kind)  # e.g. identifier: [{"system": ..., "value": ...}]
        if isinstance(value, dict):
            return {k: self._walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(v, key) for v in value]
        if value is None or isinstance(value, bool):
            return value
        if lowered in _ID_KEYS or lowered.endswith("id") and lowered not in ("paid", "valid", "covid"):
            return self.token(_ID_KEYS.get(lowered, "ID"), str(value))
        if lowered in DIRECT_KEYS:
            return self.token(DIRECT_KEYS[lowered], str(value))
        if self.level == "safe-harbor":
            if lowered in ("age", "ageyears") and isinstance(value, (int, float)) and value >= 90:
                return "90+"
            if isinstance(value, str) and _DATE.match(value):
                return self.token("DATE", value)
        if isinstance(value, str):
            return self._patterns(value)
        return value

    def _all_leaves(self, value: Any, kind: str) -> Any:  # noqa: ANN401
        return _map_leaves(value, lambda leaf: leaf if leaf is None or isinstance(leaf, bool)
                           else self.token(kind, str(leaf)))

    def _patterns(self, text: str) -> str:
        for kind, pattern in PATTERNS:
            text = pattern.sub(lambda m, kind=kind: self.token(kind, m.group(0)), text)
        if self.level == "safe-harbor":
            text = _DATE_IN_TEXT.sub(lambda m: self.token("DATE", m.group(0)), text)
        return text

    def _quoted(self, value: Any) -> Any:  # noqa: ANN401
        """Known identifier values quoted inside longer strings become their tokens too."""
        return _map_leaves(value, lambda leaf: self._quote_text(leaf) if isinstance(leaf, str) else leaf)

    def _quote_text(self, text: str) -> str:
        for original, token in sorted(self._by_value.items(), key=lambda kv: -len(kv[0])):
            if len(original) >= 3 and original in text:
                # Replace outside existing tokens only: split keeps the tokens at odd positions.
                parts = _TOKEN_SPLIT.split(text)
                text = "".join(part if i % 2 else part.replace(original, token) for i, part in enumerate(parts))
        return text


def has_token(text: str) -> bool:
    """Whether text carries a de-identification token such as [MEMBER_1]."""
    return _TOKEN.search(text) is not None


def _map_leaves(value: Any, leaf: Callable[[Any], Any]) -> Any:  # noqa: ANN401
    """A copy of a JSON-like value with ``leaf`` applied to every non-container value."""
    if isinstance(value, dict):
        return {k: _map_leaves(v, leaf) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_leaves(v, leaf) for v in value]
    return leaf(value)
