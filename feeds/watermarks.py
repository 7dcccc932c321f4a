"""Watermarks: how far a recurring job (the discharge sweep) has covered, kept in the records store's file."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from store.sqlite import SqliteDatabase

__all__ = ["Watermarks"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS watermarks (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""


class Watermarks(SqliteDatabase):
    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _SCHEMA)

    def get(self, name: str) -> datetime | None:
        row = self._conn().execute("SELECT value FROM watermarks WHERE name = ?", (name,)).fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    def advance(self, name: str, value: datetime) -> datetime:
        """Move the watermark forward to ``value`` (never back); the watermark after the call."""
        with self._transaction() as conn:
            row = conn.execute("SELECT value FROM watermarks WHERE name = ?", (name,)).fetchone()
            if row is None or datetime.fromisoformat(row[0]) < value:
                conn.execute("INSERT INTO watermarks (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                             "SET value = excluded.value, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                             (name, value.isoformat()))
                return value
            return datetime.fromisoformat(row[0])
