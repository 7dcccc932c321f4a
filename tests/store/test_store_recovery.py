"""The store recovers by itself from a transient fault of its SQLite file: a write while the file is read-only
fails with a retryable StoreUnavailable, and once the file is writable again the same Database object writes
from the same thread, without a restart.

The file is made read-only with ``chattr +i`` (immutable), which root respects, unlike file modes (the tests
run as root). Only the database file and its ``-wal`` are made immutable, never the ``-shm``: SQLite writes the
shared-memory index through ``mmap``, and a write fault on an immutable mapping is SIGBUS, which kills the test
process rather than failing a statement (tried: it does).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from store.connect import open_database
from store.database import StoreError, StoreUnavailable
from store.sql_records import SqlCareRecordStore


def _task(task_id: str) -> dict:
    return {"resourceType": "Task", "id": task_id, "status": "requested", "intent": "order",
            "for": {"reference": "Patient/m-1"}, "description": "Call Alice Example about her discharge"}


def _chattr(flag: str, paths: list[Path]) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


@contextmanager
def read_only(db_file: Path) -> Iterator[None]:
    """The database file and its WAL immutable (unwritable even for root) until the block ends."""
    paths = [p for p in (db_file, db_file.with_name(db_file.name + "-wal")) if p.exists()]
    _chattr("+i", paths)
    try:
        yield
    finally:
        _chattr("-i", paths)


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    """A migrated SQLite store's file, on a file system where ``chattr +i`` works (else skipped, with why)."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed: cannot make a file read-only for root")
    probe = tmp_path / "probe"
    probe.touch()
    try:
        _chattr("+i", [probe])
        _chattr("-i", [probe])
    except subprocess.CalledProcessError as err:
        pytest.skip(f"chattr +i is refused here ({err.stderr.decode().strip()}): needs ext4/xfs and CAP_LINUX_IMMUTABLE")
    path = tmp_path / "records.db"
    open_database(path).close()
    return path


def test_a_write_to_a_read_only_file_is_retryable_and_the_same_store_writes_once_it_is_restored(db_file: Path) -> None:
    store = SqlCareRecordStore(db_file)
    assert ["inserted"] == store.put_many([_task("t-before")])  # the -wal exists and this thread's connection too
    with read_only(db_file), pytest.raises(StoreUnavailable) as refused:
        store.put_many([_task("t-during")])
    message = str(refused.value)
    assert "4 tries" in message and ("readonly" in message or "disk I/O error" in message), message
    assert "Alice" not in message and "t-during" not in message  # no record content in the error
    assert ["inserted"] == store.put_many([_task("t-after")])  # same object, same thread, no restart
    assert (1, None, 2) == (store.count("Task") - 1, store.get("Task", "t-during"), store.count("Task"))
    store.close()


def test_a_thread_whose_connection_opened_while_the_file_was_read_only_writes_after_it_is_restored(
        db_file: Path) -> None:
    """SQLite opens a file it cannot write read-only, and that connection stays read-only for good: a worker
    thread that first touched the store during the fault failed every write until the worker restarted."""
    store = SqlCareRecordStore(db_file)
    with ThreadPoolExecutor(max_workers=1) as one_thread:  # one activity thread, reused as the worker's are
        with read_only(db_file):
            during = one_thread.submit(store.put_many, [_task("t-during")]).exception()
        after = one_thread.submit(store.put_many, [_task("t-after")])
        assert ["inserted"] == after.result()  # the thread's read-only connection was not kept
        assert isinstance(during, StoreUnavailable), repr(during)
        assert 1 == one_thread.submit(store.count, "Task").result()
    store.close()


def test_a_statement_error_is_not_retried_as_a_fault_of_the_file(db_file: Path) -> None:
    """A wrong statement still fails at once as StoreError: only faults of the file are retried."""
    store = SqlCareRecordStore(db_file)
    with pytest.raises(StoreError, match="no such table"):
        store.db.write(lambda rows: rows.rows("INSERT INTO no_such_table VALUES (1)"))
    assert ["inserted"] == store.put_many([_task("t1")])
    store.close()
