"""The care records store: FHIR R4 resources as JSON, the system of record.

:class:`CareRecordStore` is the interface the tools use; :class:`SqliteCareRecordStore`
is the embedded default (one file in the state folder). A PostgreSQL or FHIR
server backend implements the same few methods.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from store.fhir_validation import validate_resource
from store.sqlite import SqliteDatabase

__all__ = ["CareRecordStore", "PutOutcome", "SqliteCareRecordStore", "member_of", "period_of"]

PutOutcome = Literal["inserted", "updated", "unchanged"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    resource_type   TEXT NOT NULL,
    id              TEXT NOT NULL,
    member_id       TEXT,
    date_start      TEXT,
    date_end        TEXT,
    idempotency_key TEXT UNIQUE,
    content         TEXT NOT NULL,
    content_sha256  TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (resource_type, id)
);
CREATE INDEX IF NOT EXISTS ix_resources_member
    ON resources (member_id, resource_type, date_start);
CREATE INDEX IF NOT EXISTS ix_resources_type_end
    ON resources (resource_type, date_end);
"""

# Where each resource type names the member it is about.
_MEMBER_PATHS: dict[str, tuple[str, ...]] = {
    "Coverage": ("beneficiary",),
    "Encounter": ("subject",),
    "Condition": ("subject",),
    "Consent": ("patient",),
    "CarePlan": ("subject",),
    "Goal": ("subject",),
    "Task": ("for",),
    "Communication": ("subject",),
    "CoverageEligibilityResponse": ("patient",),
    "Claim": ("patient",),
    "ClaimResponse": ("patient",),
    "DocumentReference": ("subject",),
    "ServiceRequest": ("subject",),
}


def _reference_id(reference: Any) -> str | None:
    if not isinstance(reference, dict):
        return None
    ref = reference.get("reference")
    if not isinstance(ref, str):
        return None
    for prefix in ("urn:uuid:", "Patient/"):
        if ref.startswith(prefix):
            return ref.removeprefix(prefix)
    return ref.rsplit("/", 1)[-1]


def member_of(resource: dict[str, Any]) -> str | None:
    """The Patient id a resource is about, or None."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        return resource.get("id")
    for key in _MEMBER_PATHS.get(rtype, ()):
        found = _reference_id(resource.get(key))
        if found:
            return found
    return None


def period_of(resource: dict[str, Any]) -> tuple[str | None, str | None]:
    """The indexed (start, end) dates of a resource, ISO strings as written."""
    rtype = resource.get("resourceType")
    if rtype in ("Encounter", "Coverage", "CarePlan"):
        period = resource.get("period") or {}
        return period.get("start"), period.get("end")
    if rtype == "Condition":
        return resource.get("onsetDateTime") or resource.get("recordedDate"), None
    if rtype == "Communication":
        return resource.get("sent"), None
    if rtype == "Task":
        return resource.get("authoredOn"), None
    return None, None


def _canonical(resource: dict[str, Any]) -> str:
    return json.dumps(resource, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class CareRecordStore(Protocol):
    """What the tools and the importer need from a records backend."""

    def get(self, resource_type: str, resource_id: str) -> dict[str, Any] | None: ...

    def find_for_member(
        self,
        resource_type: str,
        member_id: str,
        *,
        start_before: str | None = None,
        start_after: str | None = None,
    ) -> list[dict[str, Any]]: ...

    def put_many(self, resources: Iterable[dict[str, Any]]) -> list[PutOutcome]: ...

    def create_once(
        self, resources: list[dict[str, Any]], idempotency_key: str
    ) -> tuple[list[dict[str, Any]], bool]: ...

    def by_idempotency_key(self, idempotency_key: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class _Row:
    resource_type: str
    id: str
    member_id: str | None
    date_start: str | None
    date_end: str | None
    content: str
    content_sha256: str


class SqliteCareRecordStore(SqliteDatabase):
    """SQLite backend: WAL mode, one connection per thread, safe for a thread-pool worker."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _SCHEMA)

    @staticmethod
    def _row(resource: dict[str, Any]) -> _Row:
        content = _canonical(resource)
        start, end = period_of(resource)
        return _Row(
            resource_type=resource["resourceType"],
            id=resource["id"],
            member_id=member_of(resource),
            date_start=start,
            date_end=end,
            content=content,
            content_sha256=hashlib.sha256(content.encode()).hexdigest(),
        )

    def get(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        found = self._conn().execute(
            "SELECT content FROM resources WHERE resource_type = ? AND id = ?",
            (resource_type, resource_id),
        ).fetchone()
        return json.loads(found[0]) if found else None

    def find_for_member(
        self,
        resource_type: str,
        member_id: str,
        *,
        start_before: str | None = None,
        start_after: str | None = None,
    ) -> list[dict[str, Any]]:
        """Resources of one type about one member, oldest first, optionally bounded by start date."""
        sql = "SELECT content FROM resources WHERE member_id = ? AND resource_type = ?"
        args: list[Any] = [member_id, resource_type]
        if start_before is not None:
            sql += " AND date_start < ?"
            args.append(start_before)
        if start_after is not None:
            sql += " AND date_start >= ?"
            args.append(start_after)
        sql += " ORDER BY date_start, id"
        return [json.loads(row[0]) for row in self._conn().execute(sql, args)]

    def count(self, resource_type: str | None = None) -> int:
        if resource_type is None:
            return self._conn().execute("SELECT count(*) FROM resources").fetchone()[0]
        return self._conn().execute(
            "SELECT count(*) FROM resources WHERE resource_type = ?", (resource_type,)
        ).fetchone()[0]

    def ended_between(self, resource_type: str, start: str, end: str) -> list[dict[str, Any]]:
        """Resources whose period ends in [start, end) (e.g. discharges in a window)."""
        rows = self._conn().execute(
            "SELECT content FROM resources WHERE resource_type = ? AND date_end >= ? AND date_end < ?"
            " ORDER BY date_end, id",
            (resource_type, start, end),
        )
        return [json.loads(r[0]) for r in rows]

    def ended_page(self, resource_type: str, start: str, end: str, *, after: tuple[str, str] | None = None,
                   limit: int = 500) -> list[dict[str, Any]]:
        """One page of :meth:`ended_between`, in (date_end, id) order, after the keyset cursor ``after``."""
        where, args = "resource_type = ? AND date_end >= ? AND date_end < ?", [resource_type, start, end]
        if after is not None:
            where += " AND (date_end > ? OR (date_end = ? AND id > ?))"
            args += [after[0], after[0], after[1]]
        rows = self._conn().execute(
            f"SELECT content FROM resources WHERE {where} ORDER BY date_end, id LIMIT ?", (*args, limit))  # noqa: S608
        return [json.loads(r[0]) for r in rows]

    def put_many(self, resources: Iterable[dict[str, Any]]) -> list[PutOutcome]:
        """Upsert validated resources in one transaction; unchanged content is not rewritten."""
        rows = [self._row(r) for r in resources]
        outcomes: list[PutOutcome] = []
        now = datetime.now(UTC).isoformat()
        with self._transaction() as conn:
            for row in rows:
                existing = conn.execute(
                    "SELECT content_sha256 FROM resources WHERE resource_type = ? AND id = ?",
                    (row.resource_type, row.id),
                ).fetchone()
                if existing and existing[0] == row.content_sha256:
                    outcomes.append("unchanged")
                    continue
                conn.execute(
                    "INSERT INTO resources (resource_type, id, member_id, date_start, date_end,"
                    " content, content_sha256, updated_at) VALUES (?,?,?,?,?,?,?,?)"
                    " ON CONFLICT (resource_type, id) DO UPDATE SET member_id = excluded.member_id,"
                    " date_start = excluded.date_start, date_end = excluded.date_end,"
                    " content = excluded.content, content_sha256 = excluded.content_sha256,"
                    " updated_at = excluded.updated_at",
                    (row.resource_type, row.id, row.member_id, row.date_start, row.date_end,
                     row.content, row.content_sha256, now),
                )
                outcomes.append("updated" if existing else "inserted")
        return outcomes

    def by_idempotency_key(self, idempotency_key: str) -> dict[str, Any] | None:
        found = self._conn().execute(
            "SELECT content FROM resources WHERE idempotency_key = ?", (idempotency_key,)
        ).fetchone()
        return json.loads(found[0]) if found else None

    def create_once(
        self, resources: list[dict[str, Any]], idempotency_key: str
    ) -> tuple[list[dict[str, Any]], bool]:
        """Validate and insert resources atomically unless this key was used; return (resources, created).

        The first resource holds ``idempotency_key``, the others ``key#1``,
        ``key#2``...; the unique constraint makes a retried write tool return
        what it already made, even across processes.
        """
        for resource in resources:
            validate_resource(resource)
        keys = [idempotency_key] + [f"{idempotency_key}#{i}" for i in range(1, len(resources))]
        with self._transaction() as conn:
            existing = conn.execute(
                "SELECT content FROM resources WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if existing:
                # Everything written under this key, whatever the retry passed in: "key#..." sorts
                # between "key#" and "key$", a range the unique index on idempotency_key serves.
                siblings = conn.execute(
                    "SELECT idempotency_key, content FROM resources WHERE idempotency_key > ? AND idempotency_key < ?",
                    (f"{idempotency_key}#", f"{idempotency_key}$"),
                ).fetchall()
                ordered = sorted(siblings, key=lambda row: int(row[0].rsplit("#", 1)[1]))
                return [json.loads(existing[0]), *(json.loads(row[1]) for row in ordered)], False
            now = datetime.now(UTC).isoformat()
            for resource, key in zip(resources, keys, strict=True):
                row = self._row(resource)
                conn.execute(
                    "INSERT INTO resources (resource_type, id, member_id, date_start, date_end,"
                    " idempotency_key, content, content_sha256, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                    (row.resource_type, row.id, row.member_id, row.date_start, row.date_end,
                     key, row.content, row.content_sha256, now),
                )
        return resources, True
