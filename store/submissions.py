"""Submitted prior-authorization requests as immutable, versioned records, and who submitted each.

A request is written once: one ``prior_auth_submissions`` row per (Claim id, version) holding the content
digest of what was stored and the stored resources (their ids scoped to the submission, see
:mod:`tools.pas_request`), in the same transaction as the resources themselves. Nothing here updates a row
(the tables are append-only), so a running case never reads data someone changed after it started.
``prior_auth_submitters`` lists everyone who submitted a request (the first and any identical resubmitter);
:func:`refuse_submitter` keeps each of them from deciding it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field

from runtime.errors import DecisionRefused
from store.database import Database, DuplicateKey, Rows
from store.sql_records import insert_unchangeable

__all__ = ["SubmissionRecord", "SubmissionStore", "refuse_submitter", "submitter_refusal"]

_COLUMNS = ("claim_id, version, member_id, workflow_id, content_sha256, resources, received_at, submitted_at, "
            "submitted_by")


class SubmissionRecord(BaseModel):
    """One stored version of a request: identifiers and digests only."""

    claim_id: str = Field(description="Claim.id as submitted (the stored Claim keeps it).")
    version: int = 1
    member_id: str
    workflow_id: str | None = Field(default=None, description="The triage run of the request.")
    content_sha256: str = Field(description="sha256 of the stored resources' canonical JSON, in order.")
    resources: list[str] = Field(description="Type/id of every stored resource, the Claim first.")
    received_at: AwareDatetime = Field(description="When the plan first received it (the CMS-0057-F clock).")
    submitted_at: AwareDatetime
    submitted_by: str

    def stored(self, resource_type: str) -> list[str]:
        """The stored ids of one resource type."""
        return [key.split("/", 1)[1] for key in self.resources if key.split("/", 1)[0] == resource_type]


def _record(row: tuple[Any, ...]) -> SubmissionRecord:
    return SubmissionRecord(claim_id=row[0], version=row[1], member_id=row[2], workflow_id=row[3],
                            content_sha256=row[4], resources=json.loads(row[5]),
                            received_at=datetime.fromisoformat(row[6]), submitted_at=datetime.fromisoformat(row[7]),
                            submitted_by=row[8])


class SubmissionStore:
    """The submissions tables of the care records database (schema in ``store/migrations``, revision 0004)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def latest(self, claim_id: str) -> SubmissionRecord | None:
        """The newest version of the request with this Claim id, or None."""
        row = self.db.read(lambda r: r.one(
            f"SELECT {_COLUMNS} FROM prior_auth_submissions WHERE claim_id = :c "  # noqa: S608
            "ORDER BY version DESC LIMIT 1", {"c": claim_id}))
        return _record(row) if row else None

    def create(self, record: SubmissionRecord, resources: list[dict[str, Any]],
               refuse: Callable[[list[str]], Exception]) -> SubmissionRecord | None:
        """Write a new request and its resources in one transaction; None if another writer recorded this
        (Claim id, version) first (the caller reads and compares that one).

        ``refuse(keys)`` builds the error raised (rolling everything back) when a resource id is already stored
        with other content.
        """

        def write(rows: Rows) -> None:
            rows.rows(f"INSERT INTO prior_auth_submissions ({_COLUMNS}) "  # noqa: S608
                      "VALUES (:c, :v, :m, :w, :h, :r, :rec, :at, :by)",
                      {"c": record.claim_id, "v": record.version, "m": record.member_id, "w": record.workflow_id,
                       "h": record.content_sha256, "r": json.dumps(record.resources),
                       "rec": record.received_at.isoformat(), "at": record.submitted_at.isoformat(),
                       "by": record.submitted_by})
            if differing := insert_unchangeable(rows, resources):
                raise refuse(differing)
            _add_submitter(rows, record, record.submitted_by, record.submitted_at)

        try:
            self.db.write(write)
        except DuplicateKey:
            return None  # a concurrent submission of the same Claim id won: nothing of this one was written
        return record

    def add_submitter(self, record: SubmissionRecord, user_id: str) -> None:
        """Record one more submitter of a stored request (an identical resubmission); once per user."""
        self.db.write(lambda rows: _add_submitter(rows, record, user_id, datetime.now(UTC)))

    def submitters(self, workflow_id: str) -> list[str]:
        """Everyone who submitted the request of this run, first submitter first."""
        rows = self.db.read(lambda r: r.rows(
            "SELECT user_id FROM prior_auth_submitters WHERE workflow_id = :w ORDER BY first_at, user_id",
            {"w": workflow_id}))
        return [row[0] for row in rows]

    def is_submitter(self, workflow_id: str, user_id: str) -> bool:
        return self.db.read(lambda r: r.one(
            "SELECT 1 FROM prior_auth_submitters WHERE workflow_id = :w AND user_id = :u",
            {"w": workflow_id, "u": user_id})) is not None


def _add_submitter(rows: Rows, record: SubmissionRecord, user_id: str, at: datetime) -> None:
    rows.rows("INSERT INTO prior_auth_submitters (claim_id, version, user_id, workflow_id, first_at) "
              "VALUES (:c, :v, :u, :w, :at) ON CONFLICT (claim_id, version, user_id) DO NOTHING",
              {"c": record.claim_id, "v": record.version, "u": user_id, "w": record.workflow_id,
               "at": at.isoformat()})


def submitter_refusal(workflow_id: str) -> str:
    return (f"you submitted this request ({workflow_id}): whoever submits a prior-authorization request never "
            "decides it; ask another reviewer of the queue to decide it")


def refuse_submitter(submissions: SubmissionStore, workflow_id: str, user_id: str) -> None:
    """DecisionRefused(forbidden) when ``user_id`` submitted the request of this run (any program's run: only
    prior-authorization requests have submitters). Called before a decision is signed, by the API and the CLI."""
    if submissions.is_submitter(workflow_id, user_id):
        raise DecisionRefused("forbidden", submitter_refusal(workflow_id))
