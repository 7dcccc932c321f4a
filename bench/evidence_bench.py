#!/usr/bin/env python3
"""Benchmark: evidence extraction and the review's result size (issue 20, point 5), before and after.

1. Extraction time of one evidence-dense note (the synthetic notes of every policy, repeated) at 47k, 95k,
   190k, 380k and 700k characters, for the lumbar MRI policy: the ``extract_evidence`` of ``--before``
   (loaded from ``git show <rev>:tools/evidence.py``) and today's; the old one only up to ``--before-max``
   characters (it is quadratic: minutes at 700k). Each size is also checked to give identical findings.
2. ``um.review_evidence``'s result for a 3,000-line Claim (six codes of three policies, three 1.3 kB notes):
   serialized bytes and time, today's activity and the ``--before`` one (``git show`` of
   tools/evidence_review.py, run on the old extraction), both in temporalio's ActivityEnvironment on a
   scratch SQLite store.

    .venv/bin/python bench/evidence_bench.py
    .venv/bin/python bench/evidence_bench.py --before-max 700000
"""

from __future__ import annotations

import argparse
import inspect
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from temporalio.testing import ActivityEnvironment  # noqa: E402

from bench.common import module_at  # noqa: E402
from evaluation.synthetic import HOME_HEALTH_NOTES_MET, MRI_NOTES_AGAINST, MRI_NOTES_MET, SNF_NOTES_MET  # noqa: E402
from guardrails.approval_check import ApprovalCheck  # noqa: E402
from runtime.settings import Settings  # noqa: E402
from store.connect import configured_database  # noqa: E402
from store.sql_records import SqlCareRecordStore  # noqa: E402
from tests.pas_factory import make_pas_request  # noqa: E402
from tools import evidence  # noqa: E402
from tools.criteria import load_criteria  # noqa: E402
from tools.evidence_review import ReviewEvidenceInput  # noqa: E402
from tools.pas_models import Note  # noqa: E402
from tools.pas_request import parse_pas_bundle, save_submission  # noqa: E402
from tools.prior_auth_activities import PriorAuthTools  # noqa: E402

SIZES = (47_000, 95_000, 190_000, 380_000, 700_000)
DENSE_NOTE = "\n".join([*MRI_NOTES_MET, *MRI_NOTES_AGAINST, *HOME_HEALTH_NOTES_MET, *SNF_NOTES_MET]) + "\n"
CODES = ("72148", "72149", "72158", "G0299", "G0300", "0022")


def _before_rev() -> str:
    """The commit before tools/negation.py was added: the last one with the quadratic extraction."""
    added = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "--", "tools/negation.py"], cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.split()
    return f"{added[-1]}~1" if added else "HEAD"


def _text(size: int) -> str:
    return (DENSE_NOTE * (size // len(DENSE_NOTE) + 1))[:size]


def extraction_times(before: types.ModuleType, before_max: int) -> None:
    policy = load_criteria().policy_for("72148")
    print(f"1. extraction of one note, policy {policy.policy_id} ({sum(len(c.evidence_terms) for c in policy.criteria)}"
          " phrases)")
    print(f"   {'chars':>8} {'mentions':>9} {'before s':>9} {'after s':>8} {'same':>5}")
    for size in SIZES:
        notes = [Note(document_id="d", text=_text(size))]
        started = time.perf_counter()
        after = evidence.extract_evidence(notes, policy)
        after_s = time.perf_counter() - started
        mentions = sum(len(f.citations) + len(f.contrary) for f in after)
        if size <= before_max:
            started = time.perf_counter()
            old = before.extract_evidence(notes, policy)
            before_s = f"{time.perf_counter() - started:9.2f}"
            same = str([f.model_dump() for f in old] == [f.model_dump() for f in after])
        else:
            before_s, same = f"{'skipped':>9}", "-"
        print(f"   {size:>8,} {mentions:>9,} {before_s} {after_s:8.3f} {same:>5}")


def _review(tools: object, data: ReviewEvidenceInput) -> tuple[int, float]:
    started = time.perf_counter()
    result = ActivityEnvironment().run(tools.review_evidence, data)
    return len(result.model_dump_json()), time.perf_counter() - started


def review_sizes(rev: str) -> None:
    state = Path(tempfile.mkdtemp(prefix="careloom-evidence-bench-"))
    try:
        store = SqlCareRecordStore(configured_database(Settings(state_dir=state, _env_file=None)))
        bundle = make_pas_request(store, notes=(DENSE_NOTE,) * 3, service_code=CODES[0],
                                  extra_codes=tuple(CODES[n % len(CODES)] for n in range(1, 3000))).bundle
        # Intake now refuses a Claim this large; the review must still hold if a limit is raised.
        unlimited = {"limits": None} if "limits" in inspect.signature(parse_pas_bundle).parameters else {}
        parsed = parse_pas_bundle(bundle, **unlimited)
        submission = getattr(save_submission(store, bundle, parsed), "submission", parsed)
        data = ReviewEvidenceInput(claim_id=submission.claim_id, items=submission.items)
        criteria = load_criteria()
        print(f"2. um.review_evidence of a {len(data.items):,}-line Claim, 3 notes of {len(DENSE_NOTE):,} chars")
        old_tools = module_at("_before_prior_auth_tools", rev, "tools/evidence_review.py",
                            {"from tools.evidence import": "from _before_evidence import"})
        for label, tools in (("before", old_tools.PriorAuthTools(store, criteria)),
                             ("after", PriorAuthTools(store, criteria, ApprovalCheck(())))):
            size, seconds = _review(tools, data)
            print(f"   {label:>6}: {size:>10,} bytes ({size / 2**20:.2f} MiB; Temporal's limit is 2 MiB) in"
                  f" {seconds:.2f} s")
    finally:
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=None, help="git revision of the extraction before the change"
                                                       " (default: the parent of the commit adding tools/negation.py)")
    parser.add_argument("--before-max", type=int, default=95_000,
                        help="largest note the old, quadratic extraction is timed on (default 95,000 chars)")
    args = parser.parse_args()
    rev = args.before or _before_rev()
    print(f"before = {rev}")
    before = module_at("_before_evidence", rev, "tools/evidence.py", {})
    extraction_times(before, args.before_max)
    review_sizes(rev)


if __name__ == "__main__":
    main()
