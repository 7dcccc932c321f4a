"""Fixtures for store tests: a real SQLite care records store per test."""

from __future__ import annotations

import pytest

from store.records import SqliteCareRecordStore


@pytest.fixture
def store(tmp_path):
    records = SqliteCareRecordStore(tmp_path / "r.db")
    yield records
    records.close()
