"""Whether a phrase in a clinical note is negated, looking only at a bounded window before it.

NegEx kept small: a cue ("no", "not", "denies", "without", "negative for", "never", ...) among the five
words before a match, in the same sentence and clause ("but", "however" ... start a new clause), negates
it; "no improvement", "without relief" and the like are not negations of what follows.

The answer depends only on the last five words of the phrase's sentence and clause, so the check reads a
window of a few hundred characters before the match, never the note up to it: the earlier version sliced
``text[:start]`` and searched it for every match, which made a note's extraction quadratic (a 380k-char
note took 88 s). The window is widened (doubling, up to :data:`MAX_LOOKBACK` characters) until it holds
the sentence's start or :data:`_WORDS_NEEDED` whole words; within that the answer is exactly the
whole-prefix answer (see :func:`negated`).
"""

from __future__ import annotations

import re

__all__ = ["MAX_LOOKBACK", "negated"]

_WINDOW_WORDS = 5
# Two more words than the window: a two-word clause start ("aside from") cut by the window's edge then
# leaves its second word plus the five that matter inside the window, so the cut cannot change the answer.
_WORDS_NEEDED = _WINDOW_WORDS + 2
_FIRST_LOOKBACK = 64
MAX_LOOKBACK = 4096
"""The most characters read before a match. Past it (fewer than seven words in 4 kB of a sentence, i.e. a
wall of punctuation or spaces), the window's words are taken as the clause: the cost stays bounded."""

_SENTENCE_END = re.compile(r"[.!?;:\n]")
_CLAUSE_START = re.compile(r"\b(?:but|however|although|though|except|yet|aside\s+from)\b", re.IGNORECASE)
_PSEUDO_NEGATION = re.compile(
    r"\b(?:no|not|without)\s+(?:improvement|improved|relief|change|better|benefit|only)\b", re.IGNORECASE)
_NEGATION = re.compile(
    r"\b(?:no|not|denies|denied|deny|without|never|none|negative\s+for|free\s+of|absence\s+of)\b|n['’]t\b",
    re.IGNORECASE)
_WORD = re.compile(r"[\w'’-]+")
_WORD_CHAR = re.compile(r"[\w'’-]")


def _window(text: str, start: int) -> str:
    """The text before ``start`` that decides the negation: from the sentence's start, or enough words."""
    lookback = _FIRST_LOOKBACK
    while True:
        low = max(0, start - lookback)
        head = text[low:start]
        if low > 0 and _WORD_CHAR.match(text, low - 1):
            # The window starts inside a word: drop the fragment, which is not a word of the note.
            fragment = _WORD.match(head)
            head = head[fragment.end():] if fragment else head
        boundaries = list(_SENTENCE_END.finditer(head))
        if boundaries:
            return head[boundaries[-1].end():]
        if low == 0 or lookback >= MAX_LOOKBACK or len(_WORD.findall(head)) >= _WORDS_NEEDED:
            return head
        lookback *= 2


def negated(text: str, start: int) -> bool:
    """Whether a negation cue among the five words before ``start`` (same sentence and clause) negates it.

    Exactly the answer of reading the whole note up to ``start`` whenever the window reaches the
    sentence's start or holds seven whole words: the last sentence end before the match is then inside
    the window, or the clause's last five words are (a clause start inside the window is found as before;
    one straddling its edge leaves at least six words after it).
    """
    scope = _window(text, start)
    clauses = list(_CLAUSE_START.finditer(scope))
    if clauses:
        scope = scope[clauses[-1].end():]
    window = " ".join(_WORD.findall(scope)[-_WINDOW_WORDS:])
    return _NEGATION.search(_PSEUDO_NEGATION.sub(" ", window)) is not None
