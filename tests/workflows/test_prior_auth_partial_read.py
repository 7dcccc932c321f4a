"""A prior-authorization run whose notes were not fully read never approves on its own: a person decides."""

from __future__ import annotations

import pytest

from tests.pas_factory import MRI_NOTES_MET, make_pas_request
from tests.prior_auth_runs import pending
from tools.criteria import load_criteria
from tools.prior_auth_activities import PriorAuthTools

# Every lumbar MRI phrase, over and over, just under intake's 200,000-byte note limit: ~0.1 s to read,
# several times the budget below, while the first note (every criterion met) takes well under a millisecond.
_TERMS = " ".join(t for c in load_criteria().policy_for("72148").criteria for t in c.evidence_terms) + ". "
FILLER = (_TERMS * (190_000 // len(_TERMS) + 1))[:190_000]


@pytest.fixture
def short_note_budget(monkeypatch: pytest.MonkeyPatch) -> float:
    """The workers' note time budget, lowered so the filler note cannot be read within it."""
    monkeypatch.setattr(PriorAuthTools, "note_budget_s", 0.02)
    return 0.02


async def test_an_approval_with_a_note_not_fully_read_waits_for_a_reviewer(short_note_budget, submit, store):
    """Every criterion met in the first note, the second note over its budget: the approval goes to a
    reviewer with the reason, instead of being issued automatically."""
    handle = await submit(make_pas_request(store, notes=(MRI_NOTES_MET[0], FILLER)))
    item = await pending(handle)

    assert ("approve", "rn") == (item.arguments.outcome, item.required_role)
    assert ["1 clinical note(s) not fully read within the time budget: the unread text may hold evidence for or"
            " against; read the notes before deciding"] == [r for r in item.reasons if "not fully read" in r]
