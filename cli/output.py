"""Console output shared by the commands: rich for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel
from rich.console import Console

__all__ = ["console", "err_console", "fail", "print_json"]

console = Console()
err_console = Console(stderr=True, soft_wrap=True, highlight=False)


def print_json(value: Any) -> None:
    if isinstance(value, BaseModel):
        sys.stdout.write(value.model_dump_json(indent=2) + "\n")
    else:
        sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def fail(message: str, code: int = 1) -> None:
    """Print an error that names the problem and the fix, then exit."""
    import typer

    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)
