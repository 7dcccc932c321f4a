"""Server-side inbox sessions: the cookie holds a random session id, the store holds who and until when.

A session carries the approver's identity (never their bearer token), a CSRF token for its forms, and two
clocks: an idle timeout (no request for ``idle``) and an absolute one (``absolute`` after sign-in). Signing
out deletes the row, so a copied cookie stops working at once.

A session opened through an identity provider ends no later than the ID token it was opened with
(``expires_at``): the role came from that token, and the IdP may have changed or withdrawn it since; signing in
again (a redirect while the IdP's own session lasts) reads the role afresh. The expiry is part of the session
id (``<random>.<epoch seconds>``), and only the id's hash is stored, so it cannot be moved without making the
cookie unknown, and the sessions table needs no new column. The sessions table is in the care records
database (``store/migrations``), so every API host of one deployment shares it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from api.identity import Identity
from store.database import Database, Rows

__all__ = ["Session", "SessionStore"]

@dataclass(frozen=True)
class Session:
    identity: Identity
    csrf_token: str
    created_at: datetime
    seen_at: datetime
    expires_at: datetime | None = None


def _expiry(session_id: str) -> datetime | None:
    """The cap carried by the id; a malformed one is already in the past (such an id was never issued)."""
    _, dot, seconds = session_id.partition(".")
    if not dot:
        return None
    if not seconds.isdigit() or len(seconds) > 11:
        return datetime.min.replace(tzinfo=UTC)
    return datetime.fromtimestamp(int(seconds), UTC)


def _hash(session_id: str) -> str:
    # Only a hash is stored: the database alone does not let anyone take over a session.
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    def __init__(self, db: Database, *, idle: timedelta, absolute: timedelta) -> None:
        self.idle, self.absolute = idle, absolute
        self.db = db

    def create(self, identity: Identity, *, now: datetime | None = None,
               expires_at: datetime | None = None) -> tuple[str, Session]:
        """A new session for ``identity``: (the cookie value, the session). ``expires_at`` ends it then at the
        latest (an identity provider's ID token expiry), whatever the idle and absolute clocks say."""
        at = now or datetime.now(UTC)
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        if expires_at is not None:
            session_id += f".{int(expires_at.timestamp())}"
        self.db.write(lambda db: db.rows(
            "INSERT INTO sessions (id_hash, user_id, role, display, csrf, created_at, seen_at) "
            "VALUES (:h, :u, :r, :d, :c, :at, :at)", {"h": _hash(session_id), "u": identity.user_id,
                                                   "r": identity.role, "d": identity.display_name, "c": csrf,
                                                   "at": at.isoformat()}))
        return session_id, Session(identity=identity, csrf_token=csrf, created_at=at, seen_at=at,
                                   expires_at=_expiry(session_id))

    def get(self, session_id: str, *, now: datetime | None = None) -> Session | None:
        """The live session (its idle clock restarted), or None: unknown, idle too long, too old, or past the
        ID token it was opened with."""
        at, key = now or datetime.now(UTC), _hash(session_id)
        expires_at = _expiry(session_id)

        def touch(db: Rows) -> tuple | None:
            row = db.one("SELECT user_id, role, display, csrf, created_at, seen_at FROM sessions WHERE id_hash = :h",
                         {"h": key})
            if row is None:
                return None
            created, seen = datetime.fromisoformat(row[4]), datetime.fromisoformat(row[5])
            if at - seen > self.idle or at - created > self.absolute or (expires_at is not None and at >= expires_at):
                db.rows("DELETE FROM sessions WHERE id_hash = :h", {"h": key})
                return None
            db.rows("UPDATE sessions SET seen_at = :at WHERE id_hash = :h", {"at": at.isoformat(), "h": key})
            return row

        row = self.db.write(touch)
        if row is None:
            return None
        identity = Identity(user_id=row[0], role=row[1], display_name=row[2])
        return Session(identity=identity, csrf_token=row[3], created_at=datetime.fromisoformat(row[4]), seen_at=at,
                       expires_at=expires_at)

    def delete(self, session_id: str) -> None:
        self.db.write(lambda db: db.rows("DELETE FROM sessions WHERE id_hash = :h", {"h": _hash(session_id)}))
