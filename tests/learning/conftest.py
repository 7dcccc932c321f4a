"""Fixtures shared by the learning tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import cli.eval


@pytest.fixture
def small_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Four outreach cases of the shipped suite as "the shipped suite" of the gates (a model's promotion, a
    calibrator's installation): the gate's own code path on the real stack, in seconds."""
    suite = tmp_path / "suite"
    suite.mkdir()
    cases = sorted(p for p in (cli.eval.SHIPPED_SUITE / "outreach").glob("*.yaml")
                   if not p.name.startswith(("adt-", "bundle-")))[:4]
    for case in cases:
        shutil.copy(case, suite / case.name)
    monkeypatch.setattr(cli.eval, "SHIPPED_SUITE", suite)
    return suite
