"""Watermarks: how far a recurring job (the discharge sweep) has covered, kept in the care records database
(shared by every worker host when it is PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from store.connect import open_database
from store.database import Database, Rows

__all__ = ["Watermarks"]


class Watermarks:
    def __init__(self, where: Path | str | Database) -> None:
        self.db = where if isinstance(where, Database) else open_database(where)

    def get(self, name: str) -> datetime | None:
        row = self.db.read(lambda db: db.one("SELECT value FROM watermarks WHERE name = :n", {"n": name}))
        return datetime.fromisoformat(row[0]) if row else None

    def advance(self, name: str, value: datetime) -> datetime:
        """Move the watermark forward to ``value`` (never back); the watermark after the call."""
        def move(db: Rows) -> datetime:
            row = db.one("SELECT value FROM watermarks WHERE name = :n", {"n": name})
            if row is None or datetime.fromisoformat(row[0]) < value:
                db.rows("INSERT INTO watermarks (name, value, updated_at) VALUES (:n, :v, :at) ON CONFLICT (name) "
                        "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                        {"n": name, "v": value.isoformat(), "at": datetime.now(UTC).isoformat()})
                return value
            return datetime.fromisoformat(row[0])

        return self.db.write(move)
