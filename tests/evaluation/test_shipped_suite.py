"""The shipped suite: what evaluation/make_suite.py writes, every file loads, and it covers what issue 11 lists."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from evaluation.make_suite import SUITE, lace, write_suite
from evaluation.scenarios import load_suite


def _texts(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.yaml"))}


def test_the_committed_suite_is_what_the_generator_writes(tmp_path: Path) -> None:
    written = write_suite(tmp_path)
    assert _texts(tmp_path) == _texts(SUITE), "run `python -m evaluation.make_suite` and commit evaluation/suite"
    assert written == len(_texts(SUITE))


def test_every_shipped_case_loads_and_the_suite_covers_both_programs_and_the_domain_rules() -> None:
    suite = load_suite(SUITE)
    assert [] == suite.skipped
    assert len(suite.cases) >= 200
    programs = Counter(c.program for c in suite.cases)
    assert programs["post-discharge-outreach"] >= 150 and programs["prior-auth-triage"] >= 40
    assert programs["care-gap-closure"] >= 8  # issue 24: the third program, gated like the others
    tags = Counter(t for c in suite.cases for t in c.tags)
    for tag in ("opted-out", "deceased", "tcpa", "holiday", "lace-high", "missing-data", "adverse", "ineligible",
                "denial-recommendation", "low-confidence", "malformed-output", "phi-in-output"):
        assert tags[tag] >= 4, tag
    # Issue 21: each point has cases the gate judges (schema-valid unsafe answers, real-export data).
    for tag, least in (("adverse-content", 6), ("not-adverse", 2), ("plan-completeness", 5), ("phi-in-text", 4),
                       ("full-state-name", 6), ("old-discharge", 4), ("many-stays", 2)):
        assert tags[tag] >= least, tag
    assert {"adverse-in-text", "adverse-care-plan", "negated-adverse-words", "drop-mandated", "downgrade-priority",
            "phi-in-message"} <= {c.model.reply for c in suite.cases if c.model}
    assert any(c.data.start == "import" and c.expect.outcome.count for c in suite.cases)
    assert all(c.expect.outcome.not_written for c in suite.cases if "phi-in-text" in c.tags)
    zones = {e.contact_zone for c in suite.cases for e in c.expect.actions.values() if e.contact_zone}
    assert {"America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles",
            "America/Anchorage", "Pacific/Honolulu", "America/Puerto_Rico", "Pacific/Guam"} <= zones
    verdicts = Counter(e.verdict for c in suite.cases for e in c.expect.actions.values())
    assert all(verdicts[v] >= 8 for v in ("may_auto", "must_require_approval", "must_block")), verdicts
    members = [c.data.member for c in suite.cases if c.data.member]
    assert {m.sex for m in members} == {"female", "male"} and len({m.language for m in members}) == 5
    assert len({m.plan for m in members}) == 4 and len({m.birth_date.year for m in members}) == 4


def test_lace_table() -> None:
    """DOMAIN's LACE examples, the generator's own oracle (independent of tools/risk.py)."""
    assert 10 == lace(7, True, ("I50.9",), 1)        # L5 A3 C1 E1
    assert 4 == lace(1, True, (), 0)
    assert 19 == lace(14, True, ("C78.00", "N18.4"), 4)  # C 8 -> 5 points, E capped at 4
    assert 0 == lace(0, False, (), 0)
