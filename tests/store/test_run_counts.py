"""The run-counts lease: one holder at a time; the holder renews; another takes it once it has expired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from store.run_counts import RunCounts
from tests.databases import fresh_store


def test_one_holder_renews_and_another_takes_an_expired_lease(tmp_path: Path) -> None:
    with fresh_store(tmp_path) as store:
        counts = RunCounts(store.db)
        now, ttl = datetime(2026, 12, 7, 12, tzinfo=UTC), timedelta(seconds=90)
        assert counts.take_lease("run-counts", "a", ttl, now)
        assert not counts.take_lease("run-counts", "b", ttl, now + timedelta(seconds=30))
        assert counts.take_lease("run-counts", "a", ttl, now + timedelta(seconds=60))  # renewed to +150 s
        assert not counts.take_lease("run-counts", "b", ttl, now + timedelta(seconds=120))
        assert counts.take_lease("run-counts", "b", ttl, now + timedelta(seconds=151))
        assert not counts.take_lease("run-counts", "a", ttl, now + timedelta(seconds=152))
        counts.save([("care-gap-closure", "monitoring", 7), ("post-discharge-outreach", "completed", 3)], now)
        counts.save([("care-gap-closure", "monitoring", 8)], now)
        assert [("care-gap-closure", "monitoring", 8)] == counts.load()
