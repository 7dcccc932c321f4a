"""One visibility poller per deployment: a lease in the records database, and the run counts it shares.

Every worker process serves the same gauges, but only the holder of the ``run-counts`` lease asks Temporal
visibility (:mod:`workflows.run_gauges`); it writes what it counted to ``run_counts`` and every process reads
them from there. The lease is taken in a write transaction (IMMEDIATE on SQLite; a row lock on PostgreSQL): of
several processes asking at once one gets it; a holder that stops renewing loses it when it expires.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from store.database import Database, Rows

__all__ = ["RunCounts"]


def _text(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class RunCounts:
    def __init__(self, db: Database) -> None:
        self.db = db

    def take_lease(self, name: str, holder: str, ttl: timedelta, now: datetime | None = None) -> bool:
        """Take or renew the lease ``name`` for ``holder`` until now + ttl; False while another holds it."""
        at = now or datetime.now(UTC)
        lock = " FOR UPDATE" if self.db.dialect == "postgresql" else ""

        def take(db: Rows) -> bool:
            found = db.one(f"SELECT holder, expires_at FROM poller_leases WHERE name = :n{lock}", {"n": name})
            if found is not None and found[0] != holder and str(found[1]) > _text(at):
                return False
            db.rows("DELETE FROM poller_leases WHERE name = :n", {"n": name})
            db.rows("INSERT INTO poller_leases (name, holder, expires_at) VALUES (:n, :h, :e)",
                    {"n": name, "h": holder, "e": _text(at + ttl)})
            return True

        return self.db.write(take)

    def save(self, counts: Iterable[tuple[str, str, int]], now: datetime | None = None) -> None:
        """Replace the shared counts: (program, status, runs)."""
        at = _text(now or datetime.now(UTC))
        rows = list(counts)

        def write(db: Rows) -> None:
            db.rows("DELETE FROM run_counts")
            for program, status, count in rows:
                db.rows("INSERT INTO run_counts (program, status, count, counted_at) VALUES (:p, :s, :c, :at)",
                        {"p": program, "s": status, "c": count, "at": at})

        self.db.write(write)

    def load(self) -> list[tuple[str, str, int]]:
        return [(str(p), str(s), int(c)) for p, s, c in self.db.read(lambda db: db.rows(
            "SELECT program, status, count FROM run_counts ORDER BY program, status"))]
