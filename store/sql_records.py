"""The care records store in the care records database (:mod:`store.database`): one SQLite file in the state
folder by default, PostgreSQL when several worker hosts share the store. Idempotency keys are a unique
constraint, so a write tool retried on another host returns what the first attempt made.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from store.connect import open_database
from store.database import Database, DuplicateKey, Rows
from store.fhir_validation import validate_resource
from store.records import PutOutcome, member_of, period_of

__all__ = ["SqlCareRecordStore", "insert_unchangeable"]


def _canonical(resource: dict[str, Any]) -> str:
    return json.dumps(resource, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class _Row:
    resource_type: str
    id: str
    member_id: str | None
    date_start: str | None
    date_end: str | None
    content: str
    content_sha256: str


class SqlCareRecordStore:
    """The resources table (schema in ``store/migrations``); safe to share across a worker's thread pool."""

    def __init__(self, where: Path | str | Database) -> None:
        self._owned = not isinstance(where, Database)
        self.db = open_database(where) if not isinstance(where, Database) else where

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

    def _contents(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return [json.loads(row[0]) for row in self.db.read(lambda r: r.rows(sql, params))]

    def get(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        found = self._contents("SELECT content FROM resources WHERE resource_type = :t AND id = :i",
                               {"t": resource_type, "i": resource_id})
        return found[0] if found else None

    def find_for_member(
        self,
        resource_type: str,
        member_id: str,
        *,
        start_before: str | None = None,
        start_after: str | None = None,
    ) -> list[dict[str, Any]]:
        """Resources of one type about one member, oldest first, optionally bounded by start date."""
        sql = "SELECT content FROM resources WHERE member_id = :m AND resource_type = :t"
        params: dict[str, Any] = {"m": member_id, "t": resource_type}
        if start_before is not None:
            sql += " AND date_start < :before"
            params["before"] = start_before
        if start_after is not None:
            sql += " AND date_start >= :after"
            params["after"] = start_after
        return self._contents(sql + " ORDER BY date_start, id", params)

    def count(self, resource_type: str | None = None) -> int:
        if resource_type is None:
            return self.db.read(lambda r: r.rows("SELECT count(*) FROM resources"))[0][0]
        return self.db.read(lambda r: r.rows("SELECT count(*) FROM resources WHERE resource_type = :t",
                                             {"t": resource_type}))[0][0]

    def ended_between(self, resource_type: str, start: str, end: str) -> list[dict[str, Any]]:
        """Resources whose period ends in [start, end) (e.g. discharges in a window)."""
        return self._contents("SELECT content FROM resources WHERE resource_type = :t AND date_end >= :s "
                              "AND date_end < :e ORDER BY date_end, id", {"t": resource_type, "s": start, "e": end})

    def ended_page(self, resource_type: str, start: str, end: str, *, after: tuple[str, str] | None = None,
                   limit: int = 500) -> list[dict[str, Any]]:
        """One page of :meth:`ended_between`, in (date_end, id) order, after the keyset cursor ``after``."""
        where = "resource_type = :t AND date_end >= :s AND date_end < :e"
        params: dict[str, Any] = {"t": resource_type, "s": start, "e": end, "limit": limit}
        if after is not None:
            where += " AND (date_end > :after_end OR (date_end = :after_end AND id > :after_id))"
            params |= {"after_end": after[0], "after_id": after[1]}
        return self._contents(f"SELECT content FROM resources WHERE {where} ORDER BY date_end, id LIMIT :limit",  # noqa: S608
                              params)

    def put_many(self, resources: Iterable[dict[str, Any]]) -> list[PutOutcome]:
        """Upsert validated resources in one transaction; unchanged content is not rewritten."""
        rows = [self._row(r) for r in resources]
        now = datetime.now(UTC).isoformat()

        def put(db: Rows) -> list[PutOutcome]:
            outcomes: list[PutOutcome] = []
            for row in rows:
                existing = db.one("SELECT content_sha256 FROM resources WHERE resource_type = :t AND id = :i",
                                  {"t": row.resource_type, "i": row.id})
                if existing and existing[0] == row.content_sha256:
                    outcomes.append("unchanged")
                    continue
                db.rows("INSERT INTO resources (resource_type, id, member_id, date_start, date_end, content, "
                        "content_sha256, updated_at) VALUES (:t, :i, :m, :s, :e, :c, :h, :now) "
                        "ON CONFLICT (resource_type, id) DO UPDATE SET member_id = excluded.member_id, "
                        "date_start = excluded.date_start, date_end = excluded.date_end, "
                        "content = excluded.content, content_sha256 = excluded.content_sha256, "
                        "updated_at = excluded.updated_at", {**_params(row), "now": now})
                outcomes.append("updated" if existing else "inserted")
            return outcomes

        return self.db.write(put)

    def by_idempotency_key(self, idempotency_key: str) -> dict[str, Any] | None:
        found = self._contents("SELECT content FROM resources WHERE idempotency_key = :k", {"k": idempotency_key})
        return found[0] if found else None

    def _written_under(self, idempotency_key: str) -> list[dict[str, Any]] | None:
        """Everything written under this key, in order, or None: "key#..." sorts between "key#" and "key$",
        a range the unique index on idempotency_key serves."""
        def read(db: Rows) -> list[tuple[Any, ...]] | None:
            first = db.one("SELECT content FROM resources WHERE idempotency_key = :k", {"k": idempotency_key})
            if first is None:
                return None
            siblings = db.rows("SELECT idempotency_key, content FROM resources WHERE idempotency_key > :lo "
                               "AND idempotency_key < :hi", {"lo": f"{idempotency_key}#", "hi": f"{idempotency_key}$"})
            return [("", first[0]), *sorted(siblings, key=lambda row: int(row[0].rsplit("#", 1)[1]))]

        found = self.db.read(read)
        return None if found is None else [json.loads(row[1]) for row in found]

    def create_once(
        self, resources: list[dict[str, Any]], idempotency_key: str
    ) -> tuple[list[dict[str, Any]], bool]:
        """Validate and insert resources atomically unless this key was used; return (resources, created).

        The first resource holds ``idempotency_key``, the others ``key#1``, ``key#2``...; the unique
        constraint makes a retried write tool return what it already made, even when the retry runs on
        another worker host at the same moment (the loser's insert is refused, and it reads the winner's).
        """
        return self._create(resources, idempotency_key)

    def create_once_guarded(
        self, resources: list[dict[str, Any]], idempotency_key: str, *, lock: str,
        guard: Callable[[Callable[[str, str], list[dict[str, Any]]]], None] | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """:meth:`create_once`, serialised with every other guarded write under the same ``lock`` (e.g. one member's
        contacts) and with ``guard`` run inside the same transaction, before the insert: ``guard(find)`` reads
        with ``find(resource_type, member_id)`` what the transaction sees and raises to refuse (nothing is
        written). Two hosts checking a budget at the same moment can then not both find room.

        PostgreSQL: a transaction-scoped advisory lock on ``lock``'s hash; SQLite: write transactions are
        IMMEDIATE, so writers are serialised already."""
        return self._create(resources, idempotency_key, lock=lock, guard=guard)

    def _create(
        self, resources: list[dict[str, Any]], idempotency_key: str, *, lock: str | None = None,
        guard: Callable[[Callable[[str, str], list[dict[str, Any]]]], None] | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        for resource in resources:
            validate_resource(resource)
        if (existing := self._written_under(idempotency_key)) is not None:
            return existing, False
        keys = [idempotency_key] + [f"{idempotency_key}#{i}" for i in range(1, len(resources))]
        now = datetime.now(UTC).isoformat()

        def insert(db: Rows) -> list[dict[str, Any]] | None:
            if lock is not None:
                if self.db.dialect == "postgresql":
                    db.rows("SELECT pg_advisory_xact_lock(hashtext(:k))", {"k": lock})
                found = db.rows("SELECT content FROM resources WHERE idempotency_key = :k OR (idempotency_key > :lo "
                                "AND idempotency_key < :hi) ORDER BY idempotency_key",
                                {"k": idempotency_key, "lo": f"{idempotency_key}#", "hi": f"{idempotency_key}$"})
                if found:  # written while this waited for the lock
                    return [json.loads(row[0]) for row in found]
            if guard is not None:
                guard(lambda rtype, member: [json.loads(r[0]) for r in db.rows(
                    "SELECT content FROM resources WHERE member_id = :m AND resource_type = :t ORDER BY date_start, id",
                    {"m": member, "t": rtype})])
            for resource, key in zip(resources, keys, strict=True):
                db.rows("INSERT INTO resources (resource_type, id, member_id, date_start, date_end, idempotency_key, "
                        "content, content_sha256, updated_at) VALUES (:t, :i, :m, :s, :e, :k, :c, :h, :now)",
                        {**_params(self._row(resource)), "k": key, "now": now})
            return None

        try:
            existing = self.db.write(insert)
        except DuplicateKey:
            if (existing := self._written_under(idempotency_key)) is not None:
                return existing, False
            raise
        if existing is not None:
            return existing, False
        return resources, True

    def discard_created(self, idempotency_key: str) -> int:
        """Delete what :meth:`create_once` wrote under this key (the first resource and its ``key#n`` siblings):
        the compensation of an intake whose hand-off was refused after it stored, so a refusal leaves nothing.
        Returns the rows deleted."""
        def delete(db: Rows) -> int:
            rows = db.rows("DELETE FROM resources WHERE idempotency_key = :k OR (idempotency_key > :lo AND "
                           "idempotency_key < :hi) RETURNING id",
                           {"k": idempotency_key, "lo": f"{idempotency_key}#", "hi": f"{idempotency_key}$"})
            return len(rows)

        return self.db.write(delete)

    def close(self) -> None:
        if self._owned:
            self.db.close()


def insert_unchangeable(db: Rows, resources: Iterable[dict[str, Any]]) -> list[str]:
    """Insert resources that must never change once written (a submitted request's), inside the caller's
    transaction. One already stored with the same content is left as it is; the ``Type/id`` of each stored with
    OTHER content is returned, and nothing is written for it: the caller refuses and so rolls back."""
    differing: list[str] = []
    now = datetime.now(UTC).isoformat()
    for resource in resources:
        row = SqlCareRecordStore._row(resource)
        existing = db.one("SELECT content_sha256 FROM resources WHERE resource_type = :t AND id = :i",
                          {"t": row.resource_type, "i": row.id})
        if existing is None:
            db.rows("INSERT INTO resources (resource_type, id, member_id, date_start, date_end, content, "
                    "content_sha256, updated_at) VALUES (:t, :i, :m, :s, :e, :c, :h, :now)",
                    {**_params(row), "now": now})
        elif existing[0] != row.content_sha256:
            differing.append(f"{row.resource_type}/{row.id}")
    return differing


def _params(row: _Row) -> dict[str, Any]:
    return {"t": row.resource_type, "i": row.id, "m": row.member_id, "s": row.date_start, "e": row.date_end,
            "c": row.content, "h": row.content_sha256}
