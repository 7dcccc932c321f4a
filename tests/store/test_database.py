"""The care records database: start-up refusals that name the setting and the fix, schema revisions (old,
new, unknown; development migrates, production refuses), idempotency by unique constraint across hosts,
and transient errors retried, on the real PostgreSQL where the test is about it (skipped, with the reason,
where none runs) and SQLite."""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import text

from guardrails.signing import generate_signing_key
from runtime.errors import ConfigurationError
from runtime.settings import Settings
from store.connect import open_database
from store.connect import configured_database
from store.database import Database, DuplicateKey, StoreUnavailable
from store.ledger import DecisionLedger
from store.schema import head, state, upgrade
from store.sql_records import SqlCareRecordStore
from tests.databases import postgres_available
from tests.fhir_factory import make_member
from tests.net import free_port

ROOT = Path(__file__).resolve().parents[2]
needs_postgres = pytest.mark.skipif(not postgres_available(), reason="no PostgreSQL at 127.0.0.1:5432 (CI has one)")


def _task(task_id: str, member: str = "m-1") -> dict:
    return {"resourceType": "Task", "id": task_id, "status": "requested", "intent": "order",
            "for": {"reference": f"Patient/{member}"}, "description": "Call Alice Example about her discharge"}


# --- start-up refusals -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "named"), [
    ("mysql://careloom@127.0.0.1/careloom", "unknown scheme 'mysql'"),
    ("not a url", "is not a database URL"),
    ("sqlite://", "needs a file path"),
])
def test_a_bad_url_is_refused_with_the_setting_and_the_forms_that_work(url: str, named: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(database_url=url, _env_file=None)
    message = str(refused.value)
    assert "CARELOOM_DATABASE_URL" in message and named in message and "postgresql://" in message


@needs_postgres
@pytest.mark.parametrize(("url", "named"), [
    (f"postgresql://postgres@127.0.0.1:{free_port()}/test", "is the server running and reachable"),
    ("postgresql://no_such_role@127.0.0.1:5432/test", 'role "no_such_role" does not exist'),
    ("postgresql://postgres@127.0.0.1:5432/no_such_database", "create the database"),
])
def test_an_unreachable_server_unknown_credentials_or_a_missing_database_fail_at_open(url: str, named: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        open_database(url)
    assert str(refused.value).startswith("CARELOOM_DATABASE_URL: cannot connect to")
    assert named in str(refused.value)


def test_a_worker_against_an_unreachable_database_exits_2_naming_the_setting_before_polling() -> None:
    port = free_port()
    env = {**os.environ, "CARELOOM_DATABASE_URL": f"postgresql://careloom@127.0.0.1:{port}/records",
           "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}  # nothing there either: the database is checked first
    done = subprocess.run([sys.executable, "worker.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert 2 == done.returncode
    assert "CARELOOM_DATABASE_URL: cannot connect to" in done.stderr and "Traceback" not in done.stderr


# --- schema revisions ---------------------------------------------------------------------------------------

def _at_revision(location: str | Path, revision: str) -> None:
    """A database migrated only up to ``revision``, as an older careloom left it."""
    from alembic import command

    from store.schema import _config

    db = Database(location)
    engine = db.schema_engine()
    with engine.begin() as conn:
        command.upgrade(_config(conn), revision)
    if engine is not db.engine:
        engine.dispose()
    db.close()


def test_an_older_schema_is_upgraded_in_development_and_refused_in_production(location: str | Path) -> None:
    _at_revision(location, "0001")
    with pytest.raises(ConfigurationError, match=rf"schema is at revision 0001 and this careloom needs {head()}; "
                                                 r"run `careloom db upgrade` first"):
        open_database(location, migrate=False)
    db = open_database(location, migrate=True)
    assert (state(db).current, state(db).head) == (head(), head())
    assert (0, []) == DecisionLedger(db).verify()  # the table 0002 added is there
    db.close()
    open_database(location, migrate=False).close()  # current now: production starts


def test_an_empty_database_in_production_is_refused_until_db_upgrade(location: str | Path) -> None:
    with pytest.raises(ConfigurationError, match=r"\(none: empty database\)"):
        open_database(location, migrate=False)
    db = Database(location)
    assert (None, head()) == upgrade(db)
    assert (head(), head()) == upgrade(db)  # a second upgrade changes nothing
    db.close()
    open_database(location, migrate=False).close()


def test_a_schema_newer_than_the_code_is_refused_in_every_environment(location: str | Path) -> None:
    open_database(location).close()
    db = Database(location)
    db.write(lambda rows: rows.rows("UPDATE alembic_version SET version_num = '0099'"))
    db.close()
    for migrate in (True, False):
        with pytest.raises(ConfigurationError, match="revision 0099, which this careloom does not know"):
            open_database(location, migrate=migrate)


def test_the_production_settings_refuse_a_schema_behind_the_code(location: str | Path, tmp_path: Path) -> None:
    from runtime.codec import generate_key

    _at_revision(location, "0001")
    url = location if isinstance(location, str) else f"sqlite:///{location}"
    production = Settings(environment="production", database_url=url, temporal_address="127.0.0.1:7233",
                          pseudonym_salt=SecretStr("s" * 32), payload_keys=SecretStr(f"k1={generate_key()}"),
                          signing_keys=SecretStr(f"s1={generate_signing_key()}"), state_dir=tmp_path,
                          _env_file=None)
    with pytest.raises(ConfigurationError, match="careloom db upgrade"):
        configured_database(production)


def _open_in_process(url: str, results: multiprocessing.Queue) -> None:  # noqa: ANN001
    try:
        db = open_database(url)
        results.put(state(db).current)
        db.close()
    except Exception as err:  # noqa: BLE001 - reported to the parent
        results.put(repr(err))


@needs_postgres
def test_workers_starting_at_once_on_an_empty_database_migrate_it_once(pg_url: str) -> None:
    """The advisory lock: one process migrates, the others wait and find it current."""
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    procs = [spawn.Process(target=_open_in_process, args=(pg_url, results)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [head()] * 4 == [results.get(timeout=5) for _ in procs]


# --- idempotency and errors -----------------------------------------------------------------------------------

def _create_in_process(url: str, key: str, results: multiprocessing.Queue) -> None:  # noqa: ANN001
    store = SqlCareRecordStore(url)
    made, created = store.create_once([_task(f"t-{os.getpid()}")], key)
    results.put((made[0]["id"], created))
    store.close()


@needs_postgres
def test_one_idempotency_key_written_from_several_hosts_at_once_creates_once(pg_url: str) -> None:
    open_database(pg_url).close()
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    procs = [spawn.Process(target=_create_in_process, args=(pg_url, "run-1/a1-tcm-task", results)) for _ in range(6)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    answers = [results.get(timeout=5) for _ in procs]
    assert 1 == sum(created for _, created in answers)
    assert 1 == len({task_id for task_id, _ in answers})  # every host got the one Task that was written
    store = SqlCareRecordStore(pg_url)
    assert 1 == store.count("Task")
    store.close()


def test_a_refused_write_names_the_constraint_kind_but_no_record_content(location: str | Path) -> None:
    store = SqlCareRecordStore(location)
    store.create_once([_task("t1")], "key-1")
    with pytest.raises(DuplicateKey) as refused:
        store.create_once([_task("t1")], "key-2")  # the same Task id under another key
    assert "Alice" not in str(refused.value) and "t1" not in str(refused.value)
    assert 1 == store.count("Task")  # nothing half-written
    store.close()


class _Proxy:
    """A TCP forwarder to PostgreSQL that can drop every connection and refuse new ones: a network outage."""

    def __init__(self, target_port: int) -> None:
        self.port, self._target, self._open = free_port(), target_port, True
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self._open:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self._target))
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self._open = False
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._conns.clear()

    def restore(self) -> None:
        self._open = True

    def close(self) -> None:
        self.cut()
        self._server.close()


@needs_postgres
def test_a_lost_connection_is_retried_and_an_outage_surfaces_as_retryable_store_unavailable(pg_url: str) -> None:
    open_database(pg_url).close()
    proxy = _Proxy(5432)
    through = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    store = SqlCareRecordStore(through)
    member = make_member(store)
    proxy.cut()
    proxy.restore()  # the pooled connections are dead; the server is back
    assert store.get("Patient", member.member_id) is not None  # the pool reconnects (pre-ping, then retry)
    proxy.cut()  # and now it stays away
    with pytest.raises(StoreUnavailable, match=r"did not answer .* tries; postgresql\+psycopg://postgres@127"):
        store.put_many([_task("t-outage")])
    proxy.restore()
    assert ["inserted"] == store.put_many([_task("t-outage")])  # what Temporal's retry of the activity does
    store.close()
    proxy.close()


@needs_postgres
def test_the_database_refuses_to_rewrite_the_access_log(pg_url: str) -> None:
    from store.access_log import AccessLog

    log = AccessLog(pg_url)
    log.record(user_id="rn-1", role="rn", action="approval.read", outcome="shown", workflow_id="wf-1")
    for statement in ("UPDATE access_log SET outcome = 'x'", "DELETE FROM access_log", "TRUNCATE access_log"):
        with log.db.engine.begin() as conn, pytest.raises(Exception, match="append-only"):
            conn.execute(text(statement))
    assert ["shown"] == [e.outcome for e in log.entries()]
    log.close()

