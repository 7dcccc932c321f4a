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
The entries' model is :mod:`store.ledger_entries` (no I/O: workflow code builds entries); the worker's
``ledger.append`` activity, which verifies decision entries first, is :mod:`workflows.ledger_activity`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine

from store.connect import open_database
from store.database import Database, Rows
from store.ledger_entries import LedgerEntry

__all__ = ["ANCHOR_EVERY", "GENESIS", "DecisionLedger", "LedgerProblem"]

GENESIS = "0" * 64
T = TypeVar("T")

# One lock for the chain: every appender takes it, so entries are linked one after another (PostgreSQL;
# SQLite's IMMEDIATE transactions already admit one writer at a time).
_CHAIN_LOCK = 7_424_001
ANCHOR_EVERY = 100
"""The chain head is written to ``decision_ledger_anchor`` every this many entries (in the same transaction),
so deleting the newest entries is detected too: the anchored head must still be in the chain."""


@dataclass(frozen=True)
class LedgerProblem:
    seq: int
    message: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.message}"


def _hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


class DecisionLedger:
    """The ledger tables in the care records database (:mod:`store.database`; schema in ``store/migrations``)."""

    def __init__(self, where: Path | str | Database, *, anchor_every: int = ANCHOR_EVERY) -> None:
        self.anchor_every = anchor_every
        self._owned = not isinstance(where, Database)
        self.db = where if isinstance(where, Database) else open_database(where)

    @property
    def engine(self) -> Engine | None:
        return self.db.engine

    @property
    def path(self) -> Path | None:
        return self.db.path

    def _writing(self, work: Callable[[Rows], T]) -> T:
        """``work`` in one write transaction that holds the chain: IMMEDIATE on SQLite, the advisory lock on
        PostgreSQL."""
        def locked(db: Rows) -> T:
            if self.db.dialect == "postgresql":
                db.rows("SELECT pg_advisory_xact_lock(:k)", {"k": _CHAIN_LOCK})
            return work(db)

        return self.db.write(locked)

    def append(self, entries: list[LedgerEntry]) -> int:
        """Append entries in order; an event id already present is skipped. Returns how many were added."""
        return len(self.append_new(entries))

    def append_new(self, entries: list[LedgerEntry], *,
                   also: Callable[[Rows], None] | None = None) -> list[LedgerEntry]:
        """Append entries in order; an event id already present is skipped. Returns the entries added.
        ``also`` runs in the same transaction (the approvals projection's changes: as current as the ledger)."""
        def append(db: Rows) -> list[LedgerEntry]:
            added: list[LedgerEntry] = []
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
                    db.rows("INSERT INTO decision_ledger_anchor (seq, entry_hash, anchored_at) "
                            "VALUES (:s, :h, :at)", {"s": seq, "h": digest, "at": datetime.now(UTC).isoformat()})
                prev = digest
                added.append(entry)
            if also is not None:
                also(db)
            return added

        return self._writing(append)

    def entries(self, workflow_id: str | None = None) -> list[LedgerEntry]:
        rows = self.db.read(lambda db: db.rows("SELECT body FROM decision_ledger ORDER BY seq"))
        found = [LedgerEntry.model_validate_json(r[0]) for r in rows]
        return [e for e in found if workflow_id is None or e.workflow_id == workflow_id]

    def verify(self) -> tuple[int, list[LedgerProblem]]:
        """(entries checked, problems): recomputes every hash and link, and checks the anchored head."""
        def read(db: Rows) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
            return (db.rows("SELECT seq, body, prev_hash, entry_hash FROM decision_ledger ORDER BY seq"),
                    db.rows("SELECT seq, entry_hash FROM decision_ledger_anchor ORDER BY seq DESC LIMIT 1"))

        rows, anchors = self.db.read(read)
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
        for seq, body, _prev, _hash_ in rows:
            entry = json.loads(body)
            if entry.get("verified") is False:
                problems.append(LedgerProblem(seq, f"{entry['event']} by {entry.get('actor')} on "
                                                   f"{entry.get('workflow_id')} {entry.get('approval_id')} was not "
                                                   f"verified: {entry.get('unverified_reason')}"))
        if anchor is not None:
            if anchor[0] not in hashes:
                newest = rows[-1][0] if rows else 0
                problems.append(LedgerProblem(anchor[0], f"the chain ends at entry {newest} but entry {anchor[0]} "
                                                         "was anchored: the newest entries were removed"))
            elif hashes[anchor[0]] != anchor[1]:
                problems.append(LedgerProblem(anchor[0], "differs from its anchored hash (rewritten chain)"))
        return len(rows), problems

    def close(self) -> None:
        if self._owned:
            self.db.close()
