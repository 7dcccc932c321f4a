"""The decision ledger: an append-only, hash-chained record of approval requests and decisions.

Temporal Cloud keeps closed histories at most 90 days; HIPAA documentation is
kept 6 years. Every approval request, reminder, escalation, expiry, sign-off
and decision is appended here (who, role, when, action kind, action digest,
decision, reason, policy version), and so is every automatic execution sampled
for the retrospective quality review and that review's finding. Each entry's hash covers the previous entry's hash,
so :meth:`DecisionLedger.verify` detects an altered, removed or reordered
entry. SQLite triggers refuse UPDATE and DELETE on the table.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from temporalio import activity

from store.sqlite import SqliteDatabase

__all__ = ["GENESIS", "DecisionLedger", "LedgerActivities", "LedgerAppend", "LedgerEntry", "LedgerProblem"]

GENESIS = "0" * 64

LedgerEvent = Literal["requested", "reminded", "escalated", "expired", "reassigned", "signed_off", "approved",
                      "rejected", "edited", "sampled", "quality_reviewed"]
"""``sampled``: an action executed without a human, picked for the retrospective quality review (its
``approval_id`` is the action id); ``quality_reviewed``: a reviewer's finding on a sampled action."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decision_ledger (
    seq          INTEGER PRIMARY KEY,
    event_id     TEXT NOT NULL UNIQUE,
    body         TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    entry_hash   TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS decision_ledger_no_update BEFORE UPDATE ON decision_ledger
BEGIN SELECT RAISE(ABORT, 'decision_ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS decision_ledger_no_delete BEFORE DELETE ON decision_ledger
BEGIN SELECT RAISE(ABORT, 'decision_ledger is append-only'); END;
"""


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


class DecisionLedger(SqliteDatabase):
    """The ledger table in the care records database file."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _SCHEMA)

    def append(self, entries: list[LedgerEntry]) -> int:
        """Append entries in order; an event id already present is skipped. Returns how many were added."""
        return len(self.append_new(entries))

    def append_new(self, entries: list[LedgerEntry]) -> list[LedgerEntry]:
        """Append entries in order; an event id already present is skipped. Returns the entries added."""
        added: list[LedgerEntry] = []
        with self._transaction() as conn:
            last = conn.execute("SELECT entry_hash FROM decision_ledger ORDER BY seq DESC LIMIT 1").fetchone()
            prev = last[0] if last else GENESIS
            for entry in entries:
                if conn.execute("SELECT 1 FROM decision_ledger WHERE event_id = ?", (entry.event_id,)).fetchone():
                    continue
                body = json.dumps(entry.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
                digest = _hash(prev, body)
                conn.execute("INSERT INTO decision_ledger (event_id, body, prev_hash, entry_hash) VALUES (?,?,?,?)",
                             (entry.event_id, body, prev, digest))
                prev = digest
                added.append(entry)
        return added

    def entries(self, workflow_id: str | None = None) -> list[LedgerEntry]:
        rows = self._conn().execute("SELECT body FROM decision_ledger ORDER BY seq").fetchall()
        found = [LedgerEntry.model_validate_json(r[0]) for r in rows]
        return [e for e in found if workflow_id is None or e.workflow_id == workflow_id]

    def verify(self) -> tuple[int, list[LedgerProblem]]:
        """(entries checked, problems): recomputes every hash and link of the chain."""
        rows = self._conn().execute(
            "SELECT seq, body, prev_hash, entry_hash FROM decision_ledger ORDER BY seq").fetchall()
        problems: list[LedgerProblem] = []
        prev = GENESIS
        expected_seq = rows[0][0] if rows else 1
        for seq, body, prev_hash, entry_hash in rows:
            if seq != expected_seq:
                problems.append(LedgerProblem(seq, f"entries {expected_seq}..{seq - 1} are missing"))
            if prev_hash != prev:
                problems.append(LedgerProblem(seq, "does not link to the entry before it (removed or reordered)"))
            if _hash(prev_hash, body) != entry_hash:
                problems.append(LedgerProblem(seq, "content does not match its hash (altered)"))
            prev, expected_seq = entry_hash, seq + 1
        if rows and rows[0][0] != 1:
            problems.insert(0, LedgerProblem(rows[0][0], f"entries 1..{rows[0][0] - 1} are missing"))
        return len(rows), problems


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
