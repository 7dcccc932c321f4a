"""Console output shared by the commands: rich for people, JSON for scripts.

Data never reaches rich as markup. FHIR text, queue names, reasons and error messages can hold ``[...]``:
rich would read ``[link=...]`` as a terminal hyperlink (OSC 8) and crash on ``[/bold]``. So every value put
into a markup string goes through :func:`safe` (brackets escaped, terminal control characters dropped: a raw
escape sequence in a record could rewrite the screen), and table cells through :func:`plain` (a ``Text``,
never parsed). Markup is kept for careloom's own literal styles only.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.text import Text

__all__ = ["console", "err_console", "fail", "plain", "print_json", "safe", "say"]

def _console(*, stderr: bool = False) -> Console:
    """A terminal gets rich's usual console. Anything else (a pipe, a file, a CI log) gets plain lines: no
    colour, no highlighting, and no wrapping at rich's default 80 columns, which folds a table of workflow ids
    into 8-character columns; COLUMNS, when set, still decides the width."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr, soft_wrap=stderr, highlight=not stderr)
    return Console(stderr=stderr, soft_wrap=True, highlight=False, color_system=None,
                   width=None if os.environ.get("COLUMNS") else _WIDE)


_WIDE = 400
"""Width of a console that is not a terminal: a table never folds its cells, and nobody reads wider lines."""
console = _console()
err_console = _console(stderr=True)

# C0 controls but tab and newline, DEL and C1 controls: ESC starts ANSI/OSC sequences, the others move the
# cursor or erase; none belongs in a record shown on a terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(value: object) -> str:
    """``value`` as text that rich prints literally inside a markup string."""
    return escape(_CONTROL.sub("", str(value)))


def plain(value: object) -> Text:
    """``value`` as a table cell (or anything rich renders) that is never parsed as markup."""
    return Text(_CONTROL.sub("", str(value)))


def say(text: object, **options: Any) -> None:  # noqa: ANN401
    """Print ``text`` (data, no markup of careloom's own) on the console, literally."""
    console.print(safe(text), **options)


def print_json(value: Any) -> None:
    if isinstance(value, BaseModel):
        sys.stdout.write(value.model_dump_json(indent=2) + "\n")
    else:
        sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def fail(message: str, code: int = 1) -> None:
    """Print an error that names the problem and the fix, then exit."""
    import typer

    err_console.print(f"[bold red]error:[/] {safe(message)}")
    raise typer.Exit(code)
