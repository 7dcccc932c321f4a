"""The decision ledger: an append-only, hash-chained record of approval requests and decisions.

Temporal Cloud keeps closed histories at most 90 days; HIPAA documentation is
kept 6 years. Every approval request, reminder, escalation, expiry, sign-off
and decision is appended here (who, role, when, action kind, action digest,
decision, reason, policy version), and so is every automatic execution sampled
for the retrospective quality review and that review's finding. Each entry's hash covers the previous entry's hash,
so :meth:`DecisionLedger.verify` detects an altered, removed or reordered
entry, and the chain head is anchored every :data:`ANCHOR_EVERY` entries, so removing the newest entries
is detected too. Triggers refuse UPDATE and DELETE (and, on PostgreSQL, TRUNCATE) on both tables; on
PostgreSQL an advisory lock serialises appenders, so the chain stays linear with several worker hosts.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Engine, text
from temporalio import activity

from runtime.errors import ConfigurationError
from store.database import dialect_of, open_engine
from store.sqlite import SqliteDatabase

__all__ = ["GENESIS", "DecisionLedger", "LedgerActivities", "LedgerAppend", "LedgerEntry", "LedgerProblem"]

GENESIS = "0" * 64

LedgerEvent = Literal["requested", "reminded", "escalated", "expired", "reassigned", "signed_off", "approved",
                      "rejected", "edited", "sampled", "quality_reviewed"]
"""``sampled``: an action executed without a human, picked for the retrospective quality review (its
``approval_id`` is the action id); ``quality_reviewed``: a reviewer's finding on a sampled action."""

_SQLITE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS decision_ledger (
        seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL,
        prev_hash TEXT NOT NULL, entry_hash TEXT NOT NULL)""",
    """CREATE TRIGGER IF NOT EXISTS decision_ledger_no_update BEFORE UPDATE ON decision_ledger
       BEGIN SELECT RAISE(ABORT, 'decision_ledger is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS decision_ledger_no_delete BEFORE DELETE ON decision_ledger
       BEGIN SELECT RAISE(ABORT, 'decision_ledger is append-only'); END""",
    """CREATE TABLE IF NOT EXISTS decision_ledger_anchor (
        seq INTEGER PRIMARY KEY, entry_hash TEXT NOT NULL, anchored_at TEXT NOT NULL)""",
    """CREATE TRIGGER IF NOT EXISTS decision_ledger_anchor_no_update BEFORE UPDATE ON decision_ledger_anchor
       BEGIN SELECT RAISE(ABORT, 'decision_ledger_anchor is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS decision_ledger_anchor_no_delete BEFORE DELETE ON decision_ledger_anchor
       BEGIN SELECT RAISE(ABORT, 'decision_ledger_anchor is append-only'); END""",
)
_POSTGRES_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS decision_ledger (
        seq BIGINT PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL,
        prev_hash TEXT NOT NULL, entry_hash TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS decision_ledger_anchor (
        seq BIGINT PRIMARY KEY, entry_hash TEXT NOT NULL, anchored_at TEXT NOT NULL)""",
    """CREATE OR REPLACE FUNCTION careloom_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$""",
    "DROP TRIGGER IF EXISTS decision_ledger_append_only ON decision_ledger",
    """CREATE TRIGGER decision_ledger_append_only BEFORE UPDATE OR DELETE ON decision_ledger
       FOR EACH ROW EXECUTE FUNCTION careloom_append_only()""",
    "DROP TRIGGER IF EXISTS decision_ledger_no_truncate ON decision_ledger",
    """CREATE TRIGGER decision_ledger_no_truncate BEFORE TRUNCATE ON decision_ledger
       FOR EACH STATEMENT EXECUTE FUNCTION careloom_append_only()""",
    "DROP TRIGGER IF EXISTS decision_ledger_anchor_append_only ON decision_ledger_anchor",
    """CREATE TRIGGER decision_ledger_anchor_append_only BEFORE UPDATE OR DELETE ON decision_ledger_anchor
       FOR EACH ROW EXECUTE FUNCTION careloom_append_only()""",
)
# One lock for the chain: every appender takes it, so entries are linked one after another (PostgreSQL;
# SQLite's IMMEDIATE transactions already admit one writer at a time).
_CHAIN_LOCK = 7_424_001
ANCHOR_EVERY = 100
"""The chain head is written to ``decision_ledger_anchor`` every this many entries (in the same transaction),
so deleting the newest entries is detected too: the anchored head must still be in the chain."""


class LedgerEntry(BaseModel):
    """One fact about one approval. Identifiers and codes only, no PHI."""

    event_id: str = Field(description="Unique per event (workflow id / sequence): retries append once.")
    workflow_id: str
    approval_id: str = Field(description="The approval item, e.g. a3-care-plan.1; for sampled and "
                                         "quality_reviewed entries the action id, e.g. a1-tcm-task.")
    event: LedgerEvent
    tool: str | None = Field(default=None, description="The action kind (send_outreach, create_task, "
                             "draft_care_plan, issue_determination); None on entries written before it was "
                             "recorded.")
    actor: str = Field(description="User id, or 'system' for clocks.")
    role: str | None = None
    at: datetime
    digest: str
    queue: str | None = None
    reason: str | None = None
    policy_id: str
    key_id: str | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "The signing key of the decision (signed decisions only)."))


class LedgerAppend(BaseModel):
    entries: list[LedgerEntry]


@dataclass(frozen=True)
class LedgerProblem:
    seq: int
    message: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.message}"


def _hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


class _Rows:
    """One connection, whichever backend: ``rows(sql, params)`` with ``:name`` parameters (both the sqlite3
    driver and SQLAlchemy's ``text`` take them), so the ledger's logic is written once."""

    def __init__(self, conn: Any) -> None:  # noqa: ANN401 - a sqlite3.Connection or a SQLAlchemy Connection
        self._conn = conn
        self._sqlalchemy = not isinstance(conn, sqlite3.Connection)

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        if self._sqlalchemy:
            result = self._conn.execute(text(sql), params or {})
            return [tuple(r) for r in result.all()] if result.returns_rows else []
        return self._conn.execute(sql, params or {}).fetchall()


class DecisionLedger:
    """The ledger tables in the care records database: the SQLite file (embedded default, through the same
    connection handling as the records store) or PostgreSQL (``postgresql://`` URL or engine, SQLAlchemy)."""

    def __init__(self, where: Path | str | Engine, *, anchor_every: int = ANCHOR_EVERY) -> None:
        self.anchor_every = anchor_every
        self.engine: Engine | None = None
        self._sqlite: SqliteDatabase | None = None
        if isinstance(where, Engine) or "://" in str(where):
            self.engine = where if isinstance(where, Engine) else open_engine(str(where))
            if dialect_of(self.engine) != "postgresql":
                raise ConfigurationError("the ledger takes a SQLite file path or a postgresql:// URL")
            self.path = None
        else:
            self._sqlite = SqliteDatabase(where, "")
            self.path = self._sqlite.path
        with self._writing() as db:
            for statement in _POSTGRES_SCHEMA if self.engine is not None else _SQLITE_SCHEMA:
                db.rows(statement)

    @contextmanager
    def _writing(self) -> Iterator[_Rows]:
        """One write transaction that holds the chain: IMMEDIATE on SQLite, the advisory lock on PostgreSQL."""
        if self._sqlite is not None:
            with self._sqlite._transaction() as conn:  # noqa: SLF001 - the shared SQLite handling
                yield _Rows(conn)
            return
        assert self.engine is not None
        with self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHAIN_LOCK})
            yield _Rows(conn)

    @contextmanager
    def _reading(self) -> Iterator[_Rows]:
        if self._sqlite is not None:
            yield _Rows(self._sqlite._conn())  # noqa: SLF001
            return
        assert self.engine is not None
        with self.engine.connect() as conn:
            yield _Rows(conn)

    def append(self, entries: list[LedgerEntry]) -> int:
        """Append entries in order; an event id already present is skipped. Returns how many were added."""
        return len(self.append_new(entries))

    def append_new(self, entries: list[LedgerEntry]) -> list[LedgerEntry]:
        """Append entries in order; an event id already present is skipped. Returns the entries added."""
        added: list[LedgerEntry] = []
        with self._writing() as db:
            last = db.rows("SELECT seq, entry_hash FROM decision_ledger ORDER BY seq DESC LIMIT 1")
            seq, prev = (last[0][0], last[0][1]) if last else (0, GENESIS)
            for entry in entries:
                if db.rows("SELECT 1 FROM decision_ledger WHERE event_id = :e", {"e": entry.event_id}):
                    continue
                body = json.dumps(entry.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
                digest = _hash(prev, body)
                seq += 1
                db.rows("INSERT INTO decision_ledger (seq, event_id, body, prev_hash, entry_hash) "
                        "VALUES (:s, :e, :b, :p, :h)", {"s": seq, "e": entry.event_id, "b": body, "p": prev,
                                                        "h": digest})
                if seq % self.anchor_every == 0:
                    db.rows("INSERT INTO decision_ledger_anchor (seq, entry_hash, anchored_at) VALUES (:s, :h, :at)",
                            {"s": seq, "h": digest, "at": datetime.now(UTC).isoformat()})
                prev = digest
                added.append(entry)
        return added

    def entries(self, workflow_id: str | None = None) -> list[LedgerEntry]:
        with self._reading() as db:
            rows = db.rows("SELECT body FROM decision_ledger ORDER BY seq")
        found = [LedgerEntry.model_validate_json(r[0]) for r in rows]
        return [e for e in found if workflow_id is None or e.workflow_id == workflow_id]

    def verify(self) -> tuple[int, list[LedgerProblem]]:
        """(entries checked, problems): recomputes every hash and link, and checks the anchored head."""
        with self._reading() as db:
            rows = db.rows("SELECT seq, body, prev_hash, entry_hash FROM decision_ledger ORDER BY seq")
            anchors = db.rows("SELECT seq, entry_hash FROM decision_ledger_anchor ORDER BY seq DESC LIMIT 1")
        anchor = anchors[0] if anchors else None
        problems: list[LedgerProblem] = []
        prev = GENESIS
        expected_seq = rows[0][0] if rows else 1
        hashes = {}
        for seq, body, prev_hash, entry_hash in rows:
            if seq != expected_seq:
                problems.append(LedgerProblem(seq, f"entries {expected_seq}..{seq - 1} are missing"))
            if prev_hash != prev:
                problems.append(LedgerProblem(seq, "does not link to the entry before it (removed or reordered)"))
            if _hash(prev_hash, body) != entry_hash:
                problems.append(LedgerProblem(seq, "content does not match its hash (altered)"))
            hashes[seq] = entry_hash
            prev, expected_seq = entry_hash, seq + 1
        if rows and rows[0][0] != 1:
            problems.insert(0, LedgerProblem(rows[0][0], f"entries 1..{rows[0][0] - 1} are missing"))
        if anchor is not None:
            if anchor[0] not in hashes:
                newest = rows[-1][0] if rows else 0
                problems.append(LedgerProblem(anchor[0], f"the chain ends at entry {newest} but entry {anchor[0]} "
                                                         "was anchored: the newest entries were removed"))
            elif hashes[anchor[0]] != anchor[1]:
                problems.append(LedgerProblem(anchor[0], "differs from its anchored hash (rewritten chain)"))
        return len(rows), problems

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self.engine is not None:
            self.engine.dispose()


class LedgerActivities:
    """The ``ledger.append`` activity."""

    def __init__(self, ledger: DecisionLedger) -> None:
        self._ledger = ledger

    @activity.defn(name="ledger.append")
    def append(self, data: LedgerAppend) -> int:
        from runtime.metrics import count_quality_samples

        added = self._ledger.append_new(data.entries)
        count_quality_samples(added)  # only entries added now: a retried append counts nothing twice
        return len(added)
