"""Fixtures for store tests: a real care records store per test (SQLite, or PostgreSQL: tests/databases.py), and
for the tests about both backends a fresh database of each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.databases import drop, fresh_postgres_url, fresh_store, postgres_available


@pytest.fixture
def store(tmp_path):
    with fresh_store(tmp_path, "r.db") as records:
        yield records


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database (dropped afterwards); skipped where no server runs."""
    if not postgres_available():
        pytest.skip("no PostgreSQL at 127.0.0.1:5432 (this machine's CI has one)")
    url = fresh_postgres_url()
    yield url
    drop(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """A new database of each backend: a SQLite file, then a PostgreSQL database."""
    return tmp_path / "records.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
