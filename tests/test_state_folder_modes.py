"""The state folder is private on a fresh start: the folder 0700, every file in it 0600 (records database and
its WAL, the embedded server's database, logs, users file, signing keys). Real processes, real servers."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cli.demo import SAMPLE_DATA
from runtime.settings import Settings
from runtime.state_dir import private_state_dir
from runtime.temporal_server import EmbeddedTemporalServer
from tests.cli import careloom, clean_env
from tests.net import free_port


def modes(folder: Path) -> dict[str, int]:
    """Permission bits of the folder ('.') and of everything in it, recursively."""
    found = {".": stat.S_IMODE(folder.stat().st_mode)}
    for path in sorted(folder.rglob("*")):
        found[str(path.relative_to(folder))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def open_ones(found: dict[str, int]) -> dict[str, str]:
    """Entries that group or others may read, write or enter."""
    return {name: oct(mode) for name, mode in found.items() if mode & 0o077}


@contextmanager
def umask(value: int) -> Iterator[None]:
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


def test_careloom_import_into_a_fresh_state_folder_leaves_nothing_readable_by_others(tmp_path: Path) -> None:
    """The records database (and its WAL/SHM files) that the CLI creates are 0600 in a 0700 folder, even for a
    user whose umask is the usual 022."""
    state = tmp_path / "state"
    with umask(0o022):
        done = careloom(clean_env(CARELOOM_STATE_DIR=str(state)), "import", str(SAMPLE_DATA), "--json", timeout=120)
    assert 0 == done.returncode, done.stderr[-2000:]
    assert json.loads(done.stdout)["by_type"]
    found = modes(state)
    assert "records.db" in found
    assert {} == open_ones(found), found


async def test_the_embedded_server_writes_its_database_and_log_privately(tmp_path: Path) -> None:
    """Started from a process with umask 022 (a library user, not the CLI), the Temporal server's database,
    WAL and log are still 0600: the server is started with careloom's umask."""
    settings = Settings(state_dir=tmp_path / "state", embedded_port=free_port(), embedded_ui=False, _env_file=None)
    with umask(0o022):
        async with EmbeddedTemporalServer(settings):
            found = modes(settings.state_dir)
    assert {"temporal.db", "temporal-server.log"} <= set(found), found
    assert {} == open_ones(found), found


def test_an_old_open_state_folder_is_narrowed_and_foreign_files_are_left_alone(tmp_path: Path) -> None:
    """A folder an older careloom left 0755 with 0644 files is made 0700/0600 at start; a file careloom does not
    own in a folder someone chose keeps its mode."""
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    for name in ("records.db", "records.db-wal", "demo.log", "notes.txt"):
        (state / name).write_text("x")
        os.chmod(state / name, 0o644)
    private_state_dir(state)
    assert {".": 0o700, "demo.log": 0o600, "notes.txt": 0o644, "records.db": 0o600, "records.db-wal": 0o600} == modes(
        state)


@pytest.mark.slow
def test_demo_on_a_fresh_state_folder_makes_every_file_private(tmp_path: Path) -> None:
    """`careloom demo --exit` (embedded server, worker, records store, demo log, users, signing keys): the
    folder is 0700 and every file in it 0600 afterwards."""
    state = tmp_path / "state"
    env = clean_env(CARELOOM_STATE_DIR=str(state), CARELOOM_EMBEDDED_PORT=str(free_port()),
                    CARELOOM_EMBEDDED_UI_PORT=str(free_port()), CARELOOM_API_PORT=str(free_port()),
                    CARELOOM_LOG_FORMAT="json", CARELOOM_LOG_LEVEL="WARNING")
    with umask(0o022):
        demo = careloom(env, "demo", "--exit", "--json", timeout=400)
    assert 0 == demo.returncode, demo.stderr[-3000:]
    found = modes(state)
    assert {"records.db", "temporal.db", "demo.log", "temporal-server.log", "users.json"} <= set(found), found
    assert {} == open_ones(found), found
