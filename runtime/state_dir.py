"""The local state folder is private: the folder 0700, every file careloom makes in it 0600.

It holds the records database (member data), the embedded Temporal server's database (workflow histories),
logs, the users file and development signing keys. They were 0644 in a 0755 folder: readable by every
account on the host. Three layers keep them private:

* :data:`PRIVATE_UMASK` for careloom's processes (the CLI sets it first thing, the embedded Temporal server
  is started with it), so a file made by any library (SQLite's database, WAL and SHM files, the server's own
  files) is 0600 from its first byte;
* :func:`private_state_dir` makes the folder 0700 and narrows the files careloom keeps there that an older
  careloom (or another umask) left open;
* :func:`open_private` for the logs careloom writes itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

__all__ = ["PRIVATE_DIR", "PRIVATE_FILE", "PRIVATE_UMASK", "STATE_FILES", "open_private", "private_state_dir",
           "private_umask"]

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
PRIVATE_UMASK = 0o077

STATE_FILES = ("records.db", "temporal.db", "demo.log", "temporal-server.log", "users.json", "signing-keys",
               "payload-keys")
"""What careloom keeps in the state folder (with SQLite's -wal, -shm and -journal files beside the databases).
Only these are narrowed: the folder may be one a person chose, holding files that are not careloom's."""

_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_umask() -> int:
    """Set :data:`PRIVATE_UMASK` for this process (and the processes it starts); the previous umask."""
    return os.umask(PRIVATE_UMASK)


def private_state_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if missing, make it 0700 and careloom's files in it 0600; ``path``."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    os.chmod(path, PRIVATE_DIR)  # mkdir's mode is filtered by the umask, and an existing folder keeps its own
    for name in STATE_FILES:
        for candidate in (name, *(name + side for side in _SQLITE_SIDE_FILES)):
            file = path / candidate
            if file.is_file() and not file.is_symlink():
                os.chmod(file, PRIVATE_FILE)
    return path


def open_private(path: Path, mode: str = "a") -> IO[str]:
    """Open a text file careloom writes (a log), created 0600 and narrowed to 0600 if it existed."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    return os.fdopen(fd, mode, encoding="utf-8")
