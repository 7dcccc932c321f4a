"""The decision ledger on both backends: SQLite (embedded) and PostgreSQL (127.0.0.1:5432 here; skipped with
the reason where none runs). Append-only by the database, one linear chain under concurrent appenders in
several processes, and the anchored head that exposes removed newest entries."""

from __future__ import annotations

import multiprocessing
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from runtime.errors import ConfigurationError
from store.database import open_engine
from store.ledger import DecisionLedger
from store.ledger_entries import LedgerEntry
from tests.databases import postgres_available


def execute(ledger: DecisionLedger, *statements: str) -> None:
    """Statements in one transaction, the way an administrator with database access would run them."""
    if ledger.engine is None:
        with sqlite3.connect(ledger.path) as conn:
            for statement in statements:
                conn.execute(statement)
        return
    with ledger.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def entry(n: int, workflow: str = "wf-1") -> LedgerEntry:
    return LedgerEntry(event_id=f"{workflow}/{n}", workflow_id=workflow, approval_id="a1.1", event="requested",
                       actor="system", at=datetime(2026, 12, 3, tzinfo=UTC), digest="d" * 64, policy_id="p#1")


def test_append_verify_and_idempotent_event_ids(location: str | Path) -> None:
    ledger = DecisionLedger(location)
    assert 3 == ledger.append([entry(1), entry(2), entry(3)])
    assert 0 == ledger.append([entry(2), entry(3)])  # a retried activity appends nothing twice
    assert (3, []) == ledger.verify()
    assert ["wf-1/1", "wf-1/2", "wf-1/3"] == [e.event_id for e in ledger.entries()]
    ledger.close()


def test_the_database_refuses_updates_and_deletes(location: str | Path) -> None:
    ledger = DecisionLedger(location, anchor_every=1)  # an anchor row too: row triggers fire only on rows
    ledger.append([entry(1)])
    for statement in ("UPDATE decision_ledger SET body = 'x'", "DELETE FROM decision_ledger",
                      "DELETE FROM decision_ledger_anchor"):
        with pytest.raises((DBAPIError, sqlite3.DatabaseError), match="append-only"):
            execute(ledger, statement)
    assert (1, []) == ledger.verify()
    ledger.close()


def _appender(location: str | Path, worker: int, count: int) -> None:
    ledger = DecisionLedger(location)
    for n in range(count):
        ledger.append([entry(n, workflow=f"wf-{worker}")])
    ledger.close()


def test_concurrent_appenders_in_several_processes_keep_one_linear_chain(location: str | Path) -> None:
    DecisionLedger(location).close()  # the schema first; then four processes append at once
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_appender, args=(location, w, 40)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
        assert 0 == process.exitcode
    ledger = DecisionLedger(location)
    checked, problems = ledger.verify()
    assert (160, []) == (checked, problems)
    assert 160 == len({e.event_id for e in ledger.entries()})
    ledger.close()


def test_removing_the_newest_entries_is_detected_by_the_anchor(location: str | Path) -> None:
    ledger = DecisionLedger(location, anchor_every=10)
    ledger.append([entry(n) for n in range(1, 26)])  # anchors at 10 and 20
    assert (25, []) == ledger.verify()
    guard_off = ("DROP TRIGGER decision_ledger_no_delete" if ledger.engine is None  # an administrator, first
                 else "ALTER TABLE decision_ledger DISABLE TRIGGER decision_ledger_append_only")
    execute(ledger, guard_off, "DELETE FROM decision_ledger WHERE seq > 18")
    checked, problems = ledger.verify()
    assert 18 == checked
    assert ["the chain ends at entry 18 but entry 20 was anchored: the newest entries were removed"] == [
        p.message for p in problems]
    ledger.close()


@pytest.mark.parametrize(("bad", "message"), [
    ("mysql://root@127.0.0.1/test", "unknown scheme 'mysql'"),
    ("not a location", "is not a database URL"),
    ("postgresql://postgres@127.0.0.1:1/test", "is the server running"),
])
def test_bad_database_urls_fail_at_start_naming_the_setting(bad: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match="CARELOOM_DATABASE_URL") as caught:
        open_engine(bad)
    assert message in str(caught.value)


def test_a_missing_database_names_the_fix() -> None:
    if not postgres_available():
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    with pytest.raises(ConfigurationError, match="create the database") as caught:
        open_engine("postgresql://postgres:secret@127.0.0.1:5432/careloom_nowhere")
    assert "secret" not in str(caught.value)  # the password is never echoed
