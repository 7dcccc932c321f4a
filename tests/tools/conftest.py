"""Fixtures for tool tests: a real care records store per test (SQLite, or PostgreSQL: tests/databases.py)."""

from __future__ import annotations

import pytest

from tests.databases import fresh_store


@pytest.fixture
def store(tmp_path):
    with fresh_store(tmp_path, "r.db") as records:
        yield records
