#!/usr/bin/env python3
"""Set up careloom's virtual environment if needed, then run a command in it.

    python3 bootstrap.py demo      # the demo (careloom demo --exit and friends take flags)
    python3 bootstrap.py test      # the test suite (extra args go to pytest)
    python3 bootstrap.py careloom ARGS...   # any careloom command

Only the Python standard library is used here, so this works on a fresh
machine with Python 3.11+. The environment is rebuilt when requirements.lock
or pyproject.toml change.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".careloom-installed"


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("requirements.lock", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_environment() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"careloom needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    wanted = _fingerprint()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("bootstrap: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    python = str(BIN / "python")
    print("bootstrap: installing pinned dependencies (requirements.lock)", flush=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "-r", str(ROOT / "requirements.lock")],
                   check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps",
                    "-e", str(ROOT)], check=True)
    # Byte-compile everything once. With PYTHONDONTWRITEBYTECODE set (as on some CI machines) nothing
    # is ever cached, and every process (CLI command, worker, replay process) would compile its
    # imports from source again: about 2 s per process here.
    print("bootstrap: byte-compiling the environment", flush=True)
    subprocess.run([python, "-m", "compileall", "-q", "-j", "0", sysconfig_purelib(python)],
                   check=False, stdout=subprocess.DEVNULL)
    STAMP.write_text(wanted)


def sysconfig_purelib(python: str) -> str:
    """The environment's site-packages folder."""
    return subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()


def ensure_browser() -> None:
    """The browser tests drive Debian's Chromium; install it when missing and we may (root with apt)."""
    if shutil.which("chromium") or Path("/usr/bin/chromium").exists():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        print("bootstrap: Chromium is missing and cannot be installed here (needs root and apt-get); "
              "the browser tests will be skipped", flush=True)
        return
    print("bootstrap: installing Chromium for the browser tests (apt-get install chromium)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, check=False)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    ensure_environment()
    # The project's own modules too (only changed files are compiled again).
    sources = [str(ROOT / p) for p in ("agents", "workflows", "tools", "guardrails", "runtime", "store", "history",
                                       "api", "cli", "worker.py") if (ROOT / p).exists()]
    subprocess.run([str(BIN / "python"), "-m", "compileall", "-q", *sources], check=False,
                   stdout=subprocess.DEVNULL)
    command, rest = argv[0], argv[1:]
    if command == "test":
        ensure_browser()
        cmd = [str(BIN / "python"), "-m", "pytest", *rest]
    elif command == "demo":
        cmd = [str(BIN / "careloom"), "demo", *rest]
    elif command == "careloom":
        cmd = [str(BIN / "careloom"), *rest]
    else:
        print(f"bootstrap: unknown command {command!r}; use demo, test or careloom", file=sys.stderr)
        return 2
    os.chdir(ROOT)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
