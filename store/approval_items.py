"""The approvals projection: one row per open approval item, in the records database (table ``approval_items``).

Why: listing the inbox from Temporal costs a visibility scan of every parked run plus a query per run on the page;
a production frontend allows 10 visibility requests a second per namespace. The projection answers a page, a
filter, a count or a gauge with one indexed SQL query and no Temporal call.

How it stays current: the ledger activity (:mod:`workflows.ledger_activity`) applies each run's changes
(:class:`ItemChange`: the items opened or moved, the ids closed) **in the same transaction** as the ledger entries
that record them (requested, reminded, escalated, reassigned, signed off, decided, expired, withdrawn), so the
projection is exactly as current as the ledger. Rows are keyed by the appending activity's own workflow id (from
the Temporal server), never by what the input claims. What a terminated run leaves behind (no entry closes it) is
found by :func:`workflows.approval_projection.check` against visibility and removed by its rebuild.

Rows carry the item as JSON (the PendingApproval the run holds) and the columns the inbox filters and sorts on;
``due`` is the SLA deadline as fixed-width UTC text, so text order is time order on both backends.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from store.database import Database, Rows

__all__ = ["ItemChange", "ItemQuery", "ItemRow", "ProjectionPage", "apply_change", "decode_cursor", "due_text",
           "ApprovalItems"]


def due_text(when: datetime) -> str:
    """A time as the projection stores it: UTC, microseconds, ``Z``; fixed width, so text order is time order."""
    if when.tzinfo is None:
        raise ValueError("an approval item's time has no time zone")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ItemRow:
    """One open item as the projection stores it (``item``: the PendingApproval's JSON)."""

    workflow_id: str
    approval_id: str
    run_id: str
    program: str
    queue: str
    required_role: str
    role_rank: int
    priority: str
    due: str
    member_pseudonym: str
    tool: str
    requested_at: str
    item: str


@dataclass(frozen=True)
class ItemChange:
    """One run's changes: rows to insert or replace (opened, reminded, escalated, signed off), ids to delete."""

    workflow_id: str
    upserts: Sequence[ItemRow] = ()
    closed: Sequence[str] = ()


_COLUMNS = ("workflow_id", "approval_id", "run_id", "program", "queue", "required_role", "role_rank", "priority",
            "due", "member_pseudonym", "tool", "requested_at", "item")


def apply_change(db: Rows, change: ItemChange, now: datetime) -> None:
    """Apply a run's changes inside the caller's transaction (the ledger append's). Rows of another workflow id
    than the change's are ignored: a run writes only its own."""
    for approval_id in change.closed:
        db.rows("DELETE FROM approval_items WHERE workflow_id = :w AND approval_id = :a",
                {"w": change.workflow_id, "a": approval_id})
    for row in change.upserts:
        if row.workflow_id != change.workflow_id:
            continue
        values = {c: getattr(row, c) for c in _COLUMNS} | {"updated_at": due_text(now)}
        db.rows("DELETE FROM approval_items WHERE workflow_id = :workflow_id AND approval_id = :approval_id", values)
        db.rows(f"INSERT INTO approval_items ({', '.join(_COLUMNS)}, updated_at) VALUES "  # noqa: S608 - fixed text
                f"({', '.join(':' + c for c in _COLUMNS)}, :updated_at)", values)


@dataclass(frozen=True)
class ItemQuery:
    """Inbox filters, as the projection reads them (all optional)."""

    queue: str | None = None
    required_role: str | None = None
    max_role_rank: int | None = None
    priority: str | None = None
    due_before: str | None = None
    member_pseudonym: str | None = None
    workflow_ids: Sequence[str] | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        clauses, params = ["1 = 1"], {}
        for column, value in (("queue", self.queue), ("required_role", self.required_role),
                              ("priority", self.priority), ("member_pseudonym", self.member_pseudonym)):
            if value is not None:
                clauses.append(f"{column} = :{column}")
                params[column] = value
        if self.max_role_rank is not None:
            clauses.append("role_rank <= :max_rank")
            params["max_rank"] = self.max_role_rank
        if self.due_before is not None:
            clauses.append("due < :due_before")
            params["due_before"] = self.due_before
        if self.workflow_ids is not None:
            names = [f"w{i}" for i in range(len(self.workflow_ids))]
            clauses.append(f"workflow_id IN ({', '.join(':' + n for n in names)})" if names else "1 = 0")
            params |= dict(zip(names, self.workflow_ids, strict=True))
        return " AND ".join(clauses), params


@dataclass
class ProjectionPage:
    items: list[str]
    """The page's items (PendingApproval JSON), earliest due first."""
    total_items: int
    total_runs: int
    next_cursor: str | None
    rows: list[ItemRow] = field(default_factory=list)


def _cursor(due: str, workflow_id: str, approval_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([due, workflow_id, approval_id]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str, str]:
    """The (due, workflow id, approval id) a cursor continues after; ValueError if it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        due, workflow_id, approval_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError) as err:
        raise ValueError("cursor must be a value returned by a previous page") from err
    if not all(isinstance(v, str) for v in (due, workflow_id, approval_id)):
        raise ValueError("cursor must be a value returned by a previous page")
    return due, workflow_id, approval_id


class ApprovalItems:
    """Reads (and rebuilds) the projection; the ledger activity writes it with :func:`apply_change`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def page(self, query: ItemQuery, *, limit: int = 50, cursor: str | None = None) -> ProjectionPage:
        """A page in (due, workflow id, approval id) order, after ``cursor`` (keyset: any page costs the same)."""
        where, params = query.where()
        keyset, key = "", {}
        if cursor:
            due, workflow_id, approval_id = decode_cursor(cursor)
            keyset = (" AND (due > :c_due OR (due = :c_due AND (workflow_id > :c_wf OR "
                      "(workflow_id = :c_wf AND approval_id > :c_ap))))")
            key = {"c_due": due, "c_wf": workflow_id, "c_ap": approval_id}

        def read(db: Rows) -> tuple[list[tuple[Any, ...]], tuple[Any, ...] | None]:
            found = db.rows(f"SELECT {', '.join(_COLUMNS)} FROM approval_items WHERE {where}{keyset} "  # noqa: S608
                            "ORDER BY due, workflow_id, approval_id LIMIT :limit",
                            params | key | {"limit": limit + 1})
            totals = db.one(f"SELECT COUNT(*), COUNT(DISTINCT workflow_id) FROM approval_items WHERE {where}",  # noqa: S608
                            params)
            return found, totals

        found, totals = self.db.read(read)
        rows = [ItemRow(*r) for r in found[:limit]]
        more = len(found) > limit
        last = rows[-1] if rows else None
        return ProjectionPage(
            items=[r.item for r in rows], total_items=int(totals[0]) if totals else 0,
            total_runs=int(totals[1]) if totals else 0, rows=rows,
            next_cursor=_cursor(last.due, last.workflow_id, last.approval_id) if more and last else None)

    def gauges(self, now: datetime) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """Running runs with an item waiting, by queue and by role, and runs with an item past its SLA deadline,
        by program: three grouped queries in one read."""
        def read(db: Rows) -> tuple[list[tuple[Any, ...]], ...]:
            return (db.rows("SELECT queue, COUNT(DISTINCT workflow_id) FROM approval_items GROUP BY queue"),
                    db.rows("SELECT required_role, COUNT(DISTINCT workflow_id) FROM approval_items "
                            "GROUP BY required_role"),
                    db.rows("SELECT program, COUNT(DISTINCT workflow_id) FROM approval_items WHERE due < :now "
                            "GROUP BY program", {"now": due_text(now)}))

        by_queue, by_role, overdue = self.db.read(read)
        return ({str(k): int(n) for k, n in by_queue}, {str(k): int(n) for k, n in by_role},
                {str(k): int(n) for k, n in overdue})

    def rows_for(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], ItemRow]:
        """The rows of these (workflow id, approval id) pairs that the projection holds (one query)."""
        wanted = set(pairs)
        if not wanted:
            return {}
        where, params = ItemQuery(workflow_ids=sorted({w for w, _ in wanted})).where()
        found = self.db.read(lambda db: db.rows(
            f"SELECT {', '.join(_COLUMNS)} FROM approval_items WHERE {where}", params))  # noqa: S608 - fixed text
        rows = (ItemRow(*r) for r in found)
        return {(r.workflow_id, r.approval_id): r for r in rows if (r.workflow_id, r.approval_id) in wanted}

    def keys(self) -> dict[tuple[str, str], str]:
        """(workflow id, approval id) -> run id of every row: what the consistency check compares."""
        return {(str(w), str(a)): str(r) for w, a, r in self.db.read(lambda db: db.rows(
            "SELECT workflow_id, approval_id, run_id FROM approval_items"))}

    def replace_run(self, workflow_id: str, rows: Sequence[ItemRow], now: datetime) -> None:
        """Make the run's rows exactly ``rows`` (a rebuild), in one transaction."""
        def write(db: Rows) -> None:
            db.rows("DELETE FROM approval_items WHERE workflow_id = :w", {"w": workflow_id})
            apply_change(db, ItemChange(workflow_id=workflow_id, upserts=rows), now)

        self.db.write(write)

    def remove_runs(self, workflow_ids: Sequence[str]) -> int:
        """Delete every row of these runs (closed runs a rebuild found); how many rows went."""
        def write(db: Rows) -> int:
            gone = 0
            for workflow_id in workflow_ids:
                found = db.one("SELECT COUNT(*) FROM approval_items WHERE workflow_id = :w", {"w": workflow_id})
                gone += int(found[0]) if found else 0
                db.rows("DELETE FROM approval_items WHERE workflow_id = :w", {"w": workflow_id})
            return gone

        return self.db.write(write)
