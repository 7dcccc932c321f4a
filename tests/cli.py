"""Running the ``careloom`` command as a user does: a real process with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["CARELOOM", "ROOT", "careloom", "clean_env"]

ROOT = Path(__file__).resolve().parents[1]
CARELOOM = [sys.executable, "-m", "cli.main"]


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any CARELOOM_/TEMPORAL_ setting, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARELOOM_", "TEMPORAL_"))}
    env.update(settings)
    return env


def careloom(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CARELOOM, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
