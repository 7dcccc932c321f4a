"""Server-side inbox sessions: the cookie holds a random session id, the store holds who and until when.

A session carries the approver's identity (never their bearer token), a CSRF token for its forms, and two
clocks: an idle timeout (no request for ``idle``) and an absolute one (``absolute`` after sign-in). Signing
out deletes the row, so a copied cookie stops working at once. The store is a SQLite file next to the
users file; every API host of one deployment points at the same state folder.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from api.identity import Identity

__all__ = ["Session", "SessionStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id_hash     TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    role        TEXT NOT NULL,
    display     TEXT,
    csrf        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    seen_at     TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Session:
    identity: Identity
    csrf_token: str
    created_at: datetime
    seen_at: datetime


def _hash(session_id: str) -> str:
    # Only a hash is stored: the database alone does not let anyone take over a session.
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    def __init__(self, path: Path, *, idle: timedelta, absolute: timedelta) -> None:
        self.idle, self.absolute = idle, absolute
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def create(self, identity: Identity, *, now: datetime | None = None) -> tuple[str, Session]:
        """A new session for ``identity``: (the cookie value, the session)."""
        at = now or datetime.now(UTC)
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        with self._lock:
            self._conn.execute("INSERT INTO sessions VALUES (?,?,?,?,?,?,?)",
                               (_hash(session_id), identity.user_id, identity.role, identity.display_name, csrf,
                                at.isoformat(), at.isoformat()))
        return session_id, Session(identity=identity, csrf_token=csrf, created_at=at, seen_at=at)

    def get(self, session_id: str, *, now: datetime | None = None) -> Session | None:
        """The live session (its idle clock restarted), or None: unknown, idle too long, or too old."""
        at = now or datetime.now(UTC)
        with self._lock:
            row = self._conn.execute(
                "SELECT user_id, role, display, csrf, created_at, seen_at FROM sessions WHERE id_hash = ?",
                (_hash(session_id),)).fetchone()
            if row is None:
                return None
            created, seen = datetime.fromisoformat(row[4]), datetime.fromisoformat(row[5])
            if at - seen > self.idle or at - created > self.absolute:
                self._conn.execute("DELETE FROM sessions WHERE id_hash = ?", (_hash(session_id),))
                return None
            self._conn.execute("UPDATE sessions SET seen_at = ? WHERE id_hash = ?", (at.isoformat(), _hash(session_id)))
        identity = Identity(user_id=row[0], role=row[1], display_name=row[2])
        return Session(identity=identity, csrf_token=row[3], created_at=created, seen_at=at)

    def delete(self, session_id: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM sessions WHERE id_hash = ?", (_hash(session_id),))

    def close(self) -> None:
        self._conn.close()
